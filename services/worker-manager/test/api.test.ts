// Routes without a worker: executions are created inline and moved along by publishing what a
// worker and the scheduler publish.
import { connect } from 'node:net';
import { createTestEnv, encodeJson, newId, splitResult, type RunningService, type TestEnv } from '@hodei/platform';
import { beforeAll, describe, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { insertWorker, markWorkerGone } from '../src/store/workers.js';
import { fakeWorkerManager } from '../../orchestrator/test/helpers.js';
import { workerManagerAlone } from './alone.js';
import { consumedUpTo, lines, nextMessage, publishLines, publishStatus, until } from './helpers.js';

const alone = workerManagerAlone();
let env: TestEnv;
let svc: RunningService;
const post = (path: string, body: unknown) =>
  fetch(`${svc.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const get = (path: string, headers: Record<string, string> = {}) => fetch(`${svc.url}${path}`, { headers });

beforeAll(() => {
  ({ env, svc } = alone);
});

async function execute(body: unknown) {
  const res = await post('/api/v1/execute', body);
  expect(res.status).toBe(202);
  return { res, body: (await res.json()) as { id: string; status: string; [k: string]: unknown } };
}

describe('executions API', () => {
  it('queues an inline execution with its spec and publishes it (on the subject of executions without a job)', async () => {
    const queued = nextMessage(svc.ctx.bus, svc.ctx.bus.subjects.executionQueuedAdhoc);
    const { res, body } = await execute({ command: 'echo hi', timeout_seconds: 30, env: { A: '1' }, priority: 'high' });
    expect(res.headers.get('location')).toBe(`/api/v1/executions/${body.id}`);
    expect(body).toMatchObject({ status: 'queued', job_id: null, priority: 10, worker_id: null, log_lines: 0, waiting: null });
    expect(body.spec).toMatchObject({ command: 'echo hi', script: null, timeout_seconds: 30, env: { A: '1' }, name: 'echo hi' });
    expect(body.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(await queued).toMatchObject({ execution_id: body.id, priority: 10, attempt: 1 });
    const one = await get(`/api/v1/executions/${body.id}`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ id: body.id, status: 'queued' });
  });

  it('answers 400 naming the field, 404 for unknown ids', async () => {
    let res = await post('/api/v1/execute', { timeout_seconds: 5 });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    // each field of the choice is named, not only the first
    expect((await res.json()).errors.map((e: { path: string }) => e.path)).toEqual(['job_id', 'command', 'script']);
    res = await post('/api/v1/execute', { command: 'true', timeout_seconds: -1 });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0].path).toBe('timeout_seconds');
    res = await post('/api/v1/execute', { command: 'true', script: 'true' });
    expect(res.status).toBe(400);
    expect((await res.json()).errors).toEqual(['command', 'script'].map((path) => ({ path, message: 'give only one of command or script: both were given' })));
    res = await post('/api/v1/execute', { command: 'true', name: 'a\tb' });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0]).toMatchObject({ path: 'name', message: expect.stringMatching(/control characters/) });
    res = await post('/api/v1/execute', { command: 'pwd', working_dir: 'build' });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0]).toMatchObject({ path: 'working_dir', message: expect.stringMatching(/absolute path/) });
    res = await get('/api/v1/executions/not-a-uuid');
    expect(res.status).toBe(400);
    res = await get('/api/v1/executions/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11');
    expect(res.status).toBe(404);
    res = await get('/api/v1/executions/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11/logs');
    expect(res.status).toBe(404);
    res = await get('/api/v1/executions?status=bogus');
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0].path).toBe('status');
    // one argument or NAME=value over the kernel's 128 KiB could never start (E2BIG): refused
    const tooLong: Array<[unknown, string]> = [
      [{ command: 'x'.repeat(131_072) }, 'command'],
      [{ command: `echo ${'é'.repeat(65_534)}` }, 'command'],
      [{ command: 'true', args: ['a', 'x'.repeat(131_072)] }, 'args.1'],
      [{ command: 'true', env: { BIG: 'x'.repeat(131_000) } }, 'env.BIG'],
    ];
    res = await post('/api/v1/execute', { command: 'true', resources: { memory: '4GiB' } });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0]).toMatchObject({ path: 'resources.memory', message: 'unknown field "memory"' });
    for (const [body, field] of tooLong) {
      res = await post('/api/v1/execute', body);
      expect(res.status, field).toBe(400);
      const problem = await res.json();
      expect(problem.errors[0].path).toBe(field);
      expect(problem.errors[0].message).toMatch(/bytes; the kernel takes at most \d+ here/);
    }
  });

  it('a job_id while the orchestrator is down is a 503, not a 500', async () => {
    const res = await post('/api/v1/execute', { job_id: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11' });
    expect(res.status).toBe(503);
  });

  it('a job_id while the orchestrator answers 503 (its database away) is a 503 too, so the caller tries again', async () => {
    const orchestrator = await fakeWorkerManager(() => ({ status: 503, body: { title: 'Service Unavailable', status: 503, detail: 'the database is unavailable; try again' } }));
    const replica = await startWorkerManager(env.config('worker-manager', { urls: { orchestrator: orchestrator.url, scheduler: 'http://127.0.0.1:1', 'worker-manager': '' } }));
    try {
      const res = await fetch(`${replica.url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ job_id: newId() }) });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/answered 503: the database is unavailable; try again/);
    } finally {
      await replica.stop();
      await orchestrator.close();
    }
  });

  it('lists newest first with filters and X-Total-Count', async () => {
    const total = async () => Number((await get('/api/v1/executions?limit=1')).headers.get('x-total-count'));
    const before = await total();
    const a = (await execute({ command: 'true' })).body;
    const b = (await execute({ command: 'true' })).body;
    const res = await get('/api/v1/executions?limit=2');
    expect(res.headers.get('x-total-count')).toBe(String(before + 2));
    const list = (await res.json()) as { id: string }[];
    expect(list.map((e) => e.id)).toEqual([b.id, a.id]);
    const queued = await get('/api/v1/executions?status=completed');
    expect(await queued.json()).toEqual([]);
  });

  it('cancels a queued execution at once, and refuses to cancel a finished one', async () => {
    const { body } = await execute({ command: 'sleep 100' });
    const cancelEvent = nextMessage(svc.ctx.bus, svc.ctx.bus.subjects.executionCancel);
    let res = await post(`/api/v1/executions/${body.id}/cancel`, {});
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ status: 'cancelled' });
    expect(await cancelEvent).toEqual({ execution_id: body.id });
    res = await post(`/api/v1/executions/${body.id}/cancel`, {});
    expect(res.status).toBe(409);
    expect((await res.json()).detail).toContain('cancelled');
  });

  it('a cancel while the final status of a job that ran is on its way is a 409, not "cancelled before it started"', async () => {
    const bus = svc.ctx.bus;
    const { body } = await execute({ command: 'true' });
    // what a worker publishes for a job over before its running report: queued straight to its
    // final status, which waits here for its 2 log lines (they never come: held back 3 s)
    const final = { execution_id: body.id, job_id: null, worker_id: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a23', status: 'completed', exit_code: 0, last_seq: 2 };
    const now = new Date().toISOString();
    await bus.js.publish(bus.subjects.forExecution(null).status(body.id), encodeJson({ ...final, started_at: now, finished_at: now, timestamp: now }));
    const res = await post(`/api/v1/executions/${body.id}/cancel`, {});
    expect((await (await get(`/api/v1/executions/${body.id}`)).json()).status).toBe('queued');
    expect(res.status).toBe(409);
    expect((await res.json()).detail).toContain('already ended (completed)');
    const ended = await until(async () => {
      const e = await (await get(`/api/v1/executions/${body.id}`)).json();
      return e.status !== 'queued' && e;
    }, 10_000, 'the final status');
    expect(ended).toMatchObject({ status: 'completed', exit_code: 0 });
  });

  it('a cancel that the worker holding the execution answers "already ended" is a 409, the execution left to its final status', async () => {
    const bus = svc.ctx.bus;
    const { body } = await execute({ command: 'true' });
    const reason = 'execution already ended; its final status is on its way';
    const sub = bus.nc.subscribe(bus.subjects.cancelAnywhere, { callback: (_err, m) => m.respond(encodeJson({ ok: false, reason })) });
    await bus.nc.flush();
    const res = await post(`/api/v1/executions/${body.id}/cancel`, {});
    sub.unsubscribe();
    expect(res.status).toBe(409);
    expect((await res.json()).detail).toContain(reason);
    expect((await (await get(`/api/v1/executions/${body.id}`)).json()).status).toBe('queued');
  });

  it('a cancel whose worker answers late, the job it stopped recorded cancelled meanwhile, is a 202, not "already ended"', async () => {
    const bus = svc.ctx.bus;
    const w = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a25';
    const { body } = await execute({ command: 'sleep 100' });
    const at = new Date().toISOString();
    // a worker under load: the job dies at once on SIGTERM and its final status goes out, but its
    // answer comes after worker-manager stopped waiting for one
    const sub = bus.nc.subscribe(bus.subjects.cancelAnywhere, {
      callback: (_err, m) => {
        void publishStatus(bus, { execution_id: body.id, status: 'cancelled', worker_id: w, started_at: at, finished_at: at, signal: 'SIGTERM', message: 'cancelled' })
          .then(() => new Promise((r) => setTimeout(r, 300)))
          .then(() => m.respond(encodeJson({ ok: true })));
      },
    });
    await bus.nc.flush();
    const res = await post(`/api/v1/executions/${body.id}/cancel`, {});
    sub.unsubscribe();
    expect(res.status).toBe(202);
    const ended = await until(async () => {
      const e = await (await get(`/api/v1/executions/${body.id}`)).json();
      return e.status !== 'queued' && e;
    }, 10_000, 'the final status');
    expect(ended).toMatchObject({ status: 'cancelled', worker_id: w, signal: 'SIGTERM' });
  });

  it('a cancel that reached no worker in time, of an execution a worker then reports started, says so instead of "before it started"', async () => {
    const bus = svc.ctx.bus;
    const w = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a24';
    const toWorker: string[] = [];
    const sub = bus.nc.subscribe(bus.subjects.control(w), {
      callback: (_err, m) => {
        toWorker.push((JSON.parse(new TextDecoder().decode(m.data)) as { execution_id: string }).execution_id);
        m.respond(encodeJson({ ok: true }));
      },
    });
    await bus.nc.flush();
    const cancelQueued = async () => {
      const { body } = await execute({ command: 'true' });
      const res = await post(`/api/v1/executions/${body.id}/cancel`, {});
      expect(await res.json()).toMatchObject({ status: 'cancelled', message: 'cancelled before it started' });
      return body.id;
    };
    const at = new Date().toISOString();
    const running = await cancelQueued();
    await publishStatus(bus, { execution_id: running, status: 'running', worker_id: w, started_at: at });
    const ranOn = await until(async () => {
      const e = await (await get(`/api/v1/executions/${running}`)).json();
      return e.worker_id && e;
    }, 5000, 'the worker recorded');
    expect(ranOn).toMatchObject({ status: 'cancelled', worker_id: w, started_at: at, message: `cancelled, but worker ${w} had started it (stopped where it runs)` });
    await until(async () => toWorker.includes(running), 5000, 'the cancel sent to the worker');
    const completed = await cancelQueued();
    await publishStatus(bus, { execution_id: completed, status: 'completed', exit_code: 0, worker_id: w, started_at: at, finished_at: at });
    const ended = await until(async () => {
      const e = await (await get(`/api/v1/executions/${completed}`)).json();
      return e.worker_id && e;
    }, 5000, 'the worker recorded');
    expect(ended).toMatchObject({ status: 'cancelled', worker_id: w, message: `cancelled, but worker ${w} had started it (it ended completed)` });
    sub.unsubscribe();
  });

  it('cancel of a running execution: the worker that answers the cancel sent to all stops it; one that does not is asked directly', async () => {
    const bus = svc.ctx.bus;
    const reply = (subject: string, seen: string[]) =>
      bus.nc.subscribe(subject, {
        callback: (_err, m) => {
          const c = JSON.parse(new TextDecoder().decode(m.data)) as { action: string; execution_id: string };
          seen.push(`${c.action} ${c.execution_id}`);
          m.respond(new TextEncoder().encode(JSON.stringify({ ok: true })));
        },
      });
    const running = async (workerId: string) => {
      const { body } = await execute({ command: 'sleep 100' });
      await publishStatus(bus, { execution_id: body.id, status: 'running', worker_id: workerId, started_at: new Date().toISOString() });
      await until(async () => (await (await get(`/api/v1/executions/${body.id}`)).json()).status === 'running', 5000, 'running');
      return body.id;
    };
    // a worker that answers the cancel sent to every worker: no direct request follows
    const quick = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a21';
    const toAll: string[] = [];
    const toQuick: string[] = [];
    const subs = [reply(bus.subjects.cancelAnywhere, toAll), reply(bus.subjects.control(quick), toQuick)];
    await bus.nc.flush();
    const a = await running(quick);
    let res = await post(`/api/v1/executions/${a}/cancel`, {});
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ id: a, status: 'running', worker_id: quick });
    expect(toAll).toEqual([`cancel ${a}`]);
    expect(toQuick).toEqual([]);
    for (const s of subs) s.unsubscribe();
    // a worker that listens only on its own control subject is asked there
    const slow = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a22';
    const toSlow: string[] = [];
    const sub = reply(bus.subjects.control(slow), toSlow);
    await bus.nc.flush();
    const b = await running(slow);
    res = await post(`/api/v1/executions/${b}/cancel`, {});
    expect(res.status).toBe(202);
    expect(toSlow).toEqual([`cancel ${b}`]);
    sub.unsubscribe();
  });

  it('follows status events: waiting, running, final (never overwritten), result; no finished event without a job', async () => {
    const { body } = await execute({ command: 'x' });
    const id = body.id;
    const workerId = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a12';
    const finished: string[] = [];
    const finishedSub = svc.ctx.bus.nc.subscribe(`${svc.ctx.bus.subjects.executionFinished}.>`, {
      callback: (_err, m) => finished.push(m.subject),
    });
    const finishedPlain = svc.ctx.bus.nc.subscribe(svc.ctx.bus.subjects.executionFinished, { callback: (_err, m) => finished.push(m.subject) });
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'queued', message: 'no worker with label pool=gpu' });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).waiting === 'no worker with label pool=gpu', 5000, 'waiting');
    const startedAt = new Date().toISOString();
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', worker_id: workerId, started_at: startedAt });
    const running = await until(async () => {
      const e = await (await get(`/api/v1/executions/${id}`)).json();
      return e.status === 'running' && e;
    });
    expect(running).toMatchObject({ worker_id: workerId, started_at: startedAt, waiting: null });
    await publishLines(svc.ctx.bus, id, lines(1, 3));
    await publishStatus(svc.ctx.bus, {
      execution_id: id, status: 'failed', worker_id: workerId, exit_code: 3, last_seq: 3, duration_ms: 1234,
      started_at: startedAt, finished_at: new Date().toISOString(), result: { ok: false, n: [1, 2] },
    });
    const late = await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0 });
    const final = await until(async () => {
      const e = await (await get(`/api/v1/executions/${id}`)).json();
      return e.status === 'failed' && e.log_lines === 3 && e;
    });
    expect(final).toMatchObject({ exit_code: 3, duration_ms: 1234 });
    // the later "completed", once handled, has not overwritten the final status
    await consumedUpTo(svc.ctx.bus, 'status', late);
    expect((await (await get(`/api/v1/executions/${id}`)).json()).status).toBe('failed');
    // the orchestrator follows jobs only, and the scheduler takes the worker's status
    expect(finished).toEqual([]);
    finishedSub.unsubscribe();
    finishedPlain.unsubscribe();
    const result = await get(`/api/v1/executions/${id}/result`);
    expect(result.status).toBe(200);
    expect(await result.json()).toEqual({ ok: false, n: [1, 2] });
    const cancel = await post(`/api/v1/executions/${id}/cancel`, {});
    expect(cancel.status).toBe(409);
  });

  it('result: a large one with quotes, backslashes, braces and unicode comes back as written', async () => {
    const id = (await execute({ command: 'x' })).body.id;
    const awkward = 'say "hi" \\ {a,b} ünïcødé ✓ 🚀\n';
    const result = { rows: Array.from({ length: 12_000 }, (_, i) => ({ i, s: awkward })), nothing: null };
    expect(JSON.stringify(result).length).toBeGreaterThan(600_000);
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0, result });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).status === 'completed');
    const res = await get(`/api/v1/executions/${id}/result`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(result);
  });

  it('result: one sent ahead of its status in parts is put back together, then its parts leave the stream', async () => {
    const { bus } = svc.ctx;
    const id = (await execute({ command: 'x' })).body.id;
    const result = { text: 'ünïcødé "quoted" \\ '.repeat(40_000) };
    const parts = splitResult(encodeJson(result), 300_001); // odd size: cuts fall inside characters
    expect(parts.length).toBeGreaterThan(2);
    for (const [n, part] of parts.entries()) await bus.js.publish(bus.subjects.executionResultPart(id, n), part);
    await publishStatus(bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0, result_parts: parts.length });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).status === 'completed');
    const res = await get(`/api/v1/executions/${id}/result`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(result);
    await until(async () => (await bus.jsm.streams.getMessage(bus.subjects.eventsStream, { last_by_subj: bus.subjects.executionResultPart(id, 0) })) === null);
  });

  it('result: a part missing from the stream makes the result a 422 that says so, and the status is still recorded', async () => {
    const { bus } = svc.ctx;
    const id = (await execute({ command: 'x' })).body.id;
    await bus.js.publish(bus.subjects.executionResultPart(id, 0), encodeJson('only the first'));
    await publishStatus(bus, { execution_id: id, status: 'failed', exit_code: 2, last_seq: 0, result_parts: 2 });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).status === 'failed');
    const res = await get(`/api/v1/executions/${id}/result`);
    expect(res.status).toBe(422);
    expect((await res.json()).detail).toContain('part 2 of 2 of the result is missing');
  });

  it('a NUL character from a worker never holds an execution back: progress keeps U+FFFD, a result holding one is reported', async () => {
    const { bus } = svc.ctx;
    const id = (await execute({ command: 'x' })).body.id;
    await publishStatus(bus, { execution_id: id, status: 'running', started_at: new Date().toISOString(), progress: { current: 1, total: 2, percent: 50, message: 'a\u0000b', updated_at: new Date().toISOString() } });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).progress?.message === 'a\uFFFDb');
    await publishStatus(bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0, message: 'done\u0000', result: { rows: [{ k: 'x\u0000y' }] } });
    const done = await until(async () => {
      const e = await (await get(`/api/v1/executions/${id}`)).json();
      return e.status === 'completed' && e;
    });
    expect(done.message).toBe('done\uFFFD');
    const res = await get(`/api/v1/executions/${id}/result`);
    expect(res.status).toBe(422);
    expect((await res.json()).detail).toContain('the result cannot be stored: it holds a NUL character (\\u0000) at rows.0.k');
  });

  it('a lone UTF-16 surrogate from a worker ("\\ud800" in its JSON) never holds an execution back: progress keeps U+FFFD, a result holding one is reported', async () => {
    const { bus } = svc.ctx;
    const id = (await execute({ command: 'x' })).body.id;
    await publishStatus(bus, { execution_id: id, status: 'running', started_at: new Date().toISOString(), progress: { current: 1, total: 2, percent: 50, message: 'a\ud800b', updated_at: new Date().toISOString() } });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).progress?.message === 'a\uFFFDb');
    await publishStatus(bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0, result: { rows: [{ k: 'x\udc00y', ok: '\ud83d\ude00' }] } });
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).status === 'completed');
    const res = await get(`/api/v1/executions/${id}/result`);
    expect(res.status).toBe(422);
    expect((await res.json()).detail).toContain('the result cannot be stored: it holds a lone UTF-16 surrogate (\\ud800-\\udfff) at rows.0.k');
  });

  it('events stream: a client that stops reading is dropped once megabytes wait for it, not buffered for without end', async () => {
    const { bus } = svc.ctx;
    const id = (await execute({ command: 'x' })).body.id;
    const subscribers = async () => Number(/^hodei_sse_subscribers\{[^}]*\} (\d+)$/m.exec(await (await get('/metrics')).text())![1]);
    const before = await subscribers();
    const port = new URL(svc.url).port;
    const stalled = connect(Number(port), '127.0.0.1', () => stalled.write(`GET /api/v1/executions/${id}/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`));
    stalled.pause(); // reads nothing, ever
    try {
      await until(async () => (await subscribers()) === before + 1, 5000, 'the stream to open');
      const message = 'p'.repeat(30_000);
      for (let n = 1; n <= 1000 && (await subscribers()) > before; n++) {
        await publishStatus(bus, { execution_id: id, status: 'running', started_at: new Date().toISOString(), progress: { current: n, total: 1000, percent: n / 10, message, updated_at: new Date().toISOString() } });
      }
      await until(async () => (await subscribers()) === before, 10_000, 'the stalled client to be dropped');
    } finally {
      stalled.destroy();
    }
  }, 60_000);

  it('HEAD of an event stream ends with its headers: the next request on the connection is answered', async () => {
    const id = (await execute({ command: 'x' })).body.id;
    for (const path of ['/api/v1/events/stream', `/api/v1/executions/${id}/events/stream`, `/api/v1/executions/${id}/logs/stream`]) {
      const socket = connect(Number(new URL(svc.url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(`HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      const timer = setTimeout(() => socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
      expect(text, path).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*text\/event-stream[\s\S]*\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*"status":"ok"/);
    }
  });

  it('result: 404 when none, 422 with the reason when the file was unusable', async () => {
    const a = (await execute({ command: 'x' })).body.id;
    const b = (await execute({ command: 'x' })).body.id;
    await publishStatus(svc.ctx.bus, { execution_id: a, status: 'completed', exit_code: 0, last_seq: 0 });
    await publishStatus(svc.ctx.bus, { execution_id: b, status: 'completed', exit_code: 0, last_seq: 0, result_error: 'invalid JSON at position 3' });
    await until(async () => (await (await get(`/api/v1/executions/${b}`)).json()).status === 'completed');
    await until(async () => (await (await get(`/api/v1/executions/${a}`)).json()).status === 'completed');
    expect((await get(`/api/v1/executions/${a}/result`)).status).toBe(404);
    const bad = await get(`/api/v1/executions/${b}/result`);
    expect(bad.status).toBe(422);
    expect((await bad.json()).detail).toContain('invalid JSON at position 3');
  });

  it('storage figures; cleanup of job ids that have no executions removes nothing', async () => {
    const storage = async () => {
      const res = await get('/api/v1/storage');
      expect(res.status).toBe(200);
      return (await res.json()) as { executions: { rows: number; bytes: number }; logs: { rows: number; bytes: number } };
    };
    const before = await storage();
    const id = (await execute({ command: 'x' })).body.id;
    await consumedUpTo(svc.ctx.bus, 'logs', await publishLines(svc.ctx.bus, id, lines(1, 5)));
    const after = await storage();
    expect(after.executions.rows - before.executions.rows).toBe(1);
    expect(after.logs.rows - before.logs.rows).toBe(5);
    expect(after.logs.bytes).toBeGreaterThan(0);
    const c = await post('/api/v1/executions/cleanup', { job_ids: ['01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11'] });
    expect(c.status).toBe(200);
    expect(await c.json()).toEqual({ executions: 0, older_executions: 0, adhoc_executions: 0 });
    expect(await storage()).toMatchObject({ executions: { rows: after.executions.rows }, logs: { rows: after.logs.rows } });
    const bad = await post('/api/v1/executions/cleanup', { job_ids: ['nope'] });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0].path).toBe('job_ids.0');
    // a finished_before that is no date-time was a 500
    for (const finished_before of ['yesterday', '', '2026-13-45T00:00:00Z']) {
      const r = await post('/api/v1/executions/cleanup', { job_ids: [], finished_before });
      expect([r.status, (await r.json()).errors?.[0]?.path], finished_before).toEqual([400, 'finished_before']);
    }
    expect(await storage()).toMatchObject({ executions: { rows: after.executions.rows } });
  });

  it('workers: 404 for unknown, 400 for bad bodies, openapi lists the routes', async () => {
    expect((await get('/api/v1/workers/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11')).status).toBe(404);
    expect((await get('/api/v1/workers/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11/status')).status).toBe(404);
    const res = await post('/api/v1/workers', { type: 'docker' });
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0].path).toBe('type');
    // labels past what one environment entry of the worker process holds: spawn E2BIG was a 500
    const many = await post('/api/v1/workers', { labels: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`l${i}`, 'x'])) });
    expect(many.status).toBe(400);
    expect((await many.json()).errors).toEqual([{ path: 'labels', message: 'are 248891 bytes as JSON; a worker process takes at most 131051: give fewer or shorter labels' }]);
    expect(await (await get('/api/v1/workers')).json()).toEqual([]);
    const doc = await (await get('/openapi.json')).json();
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining([
      '/api/v1/workers', '/api/v1/execute', '/api/v1/executions/{id}/logs/stream', '/api/v1/events/stream', '/api/v1/storage',
    ]));
    expect(Object.keys(doc.paths['/api/v1/executions/{id}/logs'].get.responses['200'].content)).toEqual(['application/json', 'text/plain']);
  });
});

describe('workers history', () => {
  it('forgets workers stopped or exited more than HODEI_FORGET_WORKERS_AFTER_MS ago; running ones stay', async () => {
    const own = createTestEnv();
    const forgetMs = 1000;
    const wm = await startWorkerManager(own.config('worker-manager', { forgetWorkersAfterMs: forgetMs }));
    const db = wm.ctx.db;
    const capacity = { slots: 1, cpu_cores: 1, memory_bytes: 1024 ** 3 };
    const add = async (name: string, stopped: 'stopped' | 'exited' | null) => {
      const w = await insertWorker(db, { id: newId(), type: 'shell', name, pid: 1, host: 'elsewhere', labels: {}, capacity });
      if (stopped) await markWorkerGone(db, w.id, { status: stopped, exit_code: 0, signal: null });
      await db.query("UPDATE workers SET started_at = started_at - interval '2 hours', stopped_at = stopped_at - interval '1 hour' WHERE id = $1", [w.id]);
      return w.id;
    };
    const listed = async () => ((await (await fetch(`${wm.url}/api/v1/workers`)).json()) as { id: string; status: string }[]).map((w) => `${w.id} ${w.status}`);
    try {
      const [exited, stopped, running] = [await add('exited', 'exited'), await add('stopped', 'stopped'), await add('running', null)];
      await until(async () => (await listed()).join() === `${running} running`, 5000, 'the workers gone an hour ago to be forgotten');
      expect((await fetch(`${wm.url}/api/v1/workers/${exited}`)).status).toBe(404);
      expect((await fetch(`${wm.url}/api/v1/workers/${stopped}`)).status).toBe(404);
      // one that exits now is listed for HODEI_FORGET_WORKERS_AFTER_MS, then forgotten
      const stoppedAt = Date.now();
      await markWorkerGone(db, running, { status: 'exited', exit_code: 1, signal: null });
      expect(await listed()).toEqual([`${running} exited`]);
      await until(async () => (await listed()).length === 0, 5000, 'the worker that just exited to be forgotten');
      expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(forgetMs);
    } finally {
      await wm.stop();
      await own.cleanup();
    }
  });
});
