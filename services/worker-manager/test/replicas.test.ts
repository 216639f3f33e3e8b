// Two worker-manager replicas on one database and NATS prefix, started together on an empty
// database (their migrations race). Only one of them applies an execution's status events (they
// share the durable consumer); streams opened on either must see every change and the end.
import { createTestEnv, pidGone, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { insertLines } from '../src/store/logs.js';
import { call, executeOn, getExecutionOn, lines, logEvents, openSse, publishLines, publishStatus, type SseClient } from './helpers.js';

let env: TestEnv;
let replicas: RunningService[];

beforeAll(async () => {
  env = createTestEnv();
  // no orchestrator or scheduler here: the worker agents started below must not find anyone's
  const urls = { orchestrator: 'http://127.0.0.1:1', scheduler: 'http://127.0.0.1:1', 'worker-manager': '' };
  replicas = await Promise.all([startWorkerManager(env.config('worker-manager', { urls })), startWorkerManager(env.config('worker-manager', { urls }))]);
});
afterAll(async () => {
  await Promise.all((replicas ?? []).map((r) => r.stop()));
  await env?.cleanup();
});

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const statuses = (c: SseClient, id: string) =>
  c.events.filter((e) => e.event === 'job_event').map((e) => JSON.parse(e.data)).filter((d) => d.execution_id === id).map((d) => d.status);

describe('worker-manager replicas', () => {
  it('a log stream on either replica gets every line once, in order, then completed', async () => {
    const [a] = replicas as [RunningService, RunningService];
    for (let round = 0; round < 3; round++) {
      const { id } = await executeOn(a.url, { command: 'true' });
      const streams = await Promise.all(replicas.map((r) => openSse(`${r.url}/api/v1/executions/${id}/logs/stream`)));
      await Promise.all(streams.map((c) => c.waitFor((e) => e.event === 'connected')));
      await publishStatus(a.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() });
      for (let k = 0; k < 4; k++) await publishLines(a.ctx.bus, id, lines(k * 25 + 1, k * 25 + 25));
      await publishStatus(a.ctx.bus, { execution_id: id, status: 'failed', exit_code: 2, last_seq: 100, duration_ms: 40 });
      for (const c of streams) {
        const done = await c.waitFor((e) => e.event === 'completed', 8000);
        expect(JSON.parse(done.data)).toMatchObject({ status: 'failed', exit_code: 2, duration_ms: 40 });
        await c.ended;
        expect(logEvents(c).map((l) => l.seq)).toEqual(range(1, 100));
      }
      const views = await Promise.all(replicas.map((r) => getExecutionOn(r.url, id)));
      expect(views[0]).toMatchObject({ status: 'failed', exit_code: 2 });
      expect(views[1]).toEqual(views[0]);
    }
  });

  it('lines another replica stored after a stream here read the history reach that stream while the job runs', async () => {
    // Another replica took lines 6-10 from the stream and had not stored them when the stream here
    // read the history; they never came here live. Lines after them do, and wait behind the gap.
    const [a] = replicas as [RunningService, RunningService];
    const { id } = await executeOn(a.url, { command: 'true' });
    await publishStatus(a.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() });
    const c = await openSse(`${a.url}/api/v1/executions/${id}/logs/stream`);
    await publishLines(a.ctx.bus, id, lines(1, 5));
    await c.waitFor((e) => e.event === 'log' && e.id === '5');
    await publishLines(a.ctx.bus, id, lines(11, 15));
    await insertLines(a.ctx.db, [{ execution_id: id, lines: lines(6, 10) }]);
    await c.waitFor((e) => e.event === 'log' && e.id === '15', 5000);
    expect(logEvents(c).map((l) => l.seq)).toEqual(range(1, 15));
    await publishStatus(a.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 15 });
    await c.waitFor((e) => e.event === 'completed', 8000);
    expect(logEvents(c).map((l) => l.seq)).toEqual(range(1, 15));
  });

  it('status streams on either replica see every change of an execution, whichever replica applied it', async () => {
    const [a, b] = replicas as [RunningService, RunningService];
    const everything = await Promise.all(replicas.map((r) => openSse(`${r.url}/api/v1/events/stream`)));
    await Promise.all(everything.map((c) => c.waitFor((e) => e.event === 'connected')));
    for (let round = 0; round < 3; round++) {
      const { id } = await executeOn(round % 2 ? b.url : a.url, { command: 'true' });
      const one = await Promise.all(replicas.map((r) => openSse(`${r.url}/api/v1/executions/${id}/events/stream`)));
      await Promise.all(one.map((c) => c.waitFor((e) => e.event === 'job_event')));
      await publishStatus(a.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() });
      const progress = { current: 1, total: 2, percent: 50, message: 'half', updated_at: new Date().toISOString() };
      await publishStatus(a.ctx.bus, { execution_id: id, status: 'running', progress });
      // (the replicas apply events side by side: one applying the end before another the progress would drop it)
      await Promise.all(one.map((c) => c.waitFor((e) => e.event === 'progress' && JSON.parse(e.data).message === 'half', 8000)));
      await publishStatus(a.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0 });
      for (const c of one) {
        await c.waitFor((e) => e.event === 'job_event' && JSON.parse(e.data).status === 'completed', 8000);
        await c.ended;
        expect(statuses(c, id)).toEqual(['queued', 'running', 'completed']);
      }
      for (const c of everything) {
        await c.waitFor((e) => e.event === 'job_event' && JSON.parse(e.data).execution_id === id && JSON.parse(e.data).status === 'completed', 8000);
        expect(statuses(c, id)).toEqual(['queued', 'running', 'completed']);
      }
    }
    for (const c of everything) c.close();
  });

  it('a worker started through one replica is drained, or killed, through the other', async () => {
    const [a, b] = replicas as [RunningService, RunningService];
    for (const force of [false, true]) {
      const res = await call(a.url, 'POST', '/api/v1/workers', { type: 'shell', capacity: { slots: 1 } });
      expect(res.status).toBe(201);
      const w = (await res.json()) as { id: string; pid: number };
      const stop = await call(b.url, 'DELETE', `/api/v1/workers/${w.id}${force ? '?force=true' : ''}`);
      expect(stop.status).toBe(200);
      expect(await stop.json()).toMatchObject({ id: w.id, status: 'stopped' });
      expect(pidGone(w.pid)).toBe(true);
    }
  }, 30_000);

  it('a replica started beside a running one leaves the workers of that one alone: its graceful stop does not stop them', async () => {
    const [a] = replicas as [RunningService, RunningService];
    const res = await call(a.url, 'POST', '/api/v1/workers', { type: 'shell', capacity: { slots: 1 } });
    const w = (await res.json()) as { id: string; pid: number };
    const urls = { orchestrator: 'http://127.0.0.1:1', scheduler: 'http://127.0.0.1:1', 'worker-manager': '' };
    const late = await startWorkerManager(env.config('worker-manager', { urls }));
    await late.stop();
    expect(pidGone(w.pid)).toBe(false);
    expect(await (await call(a.url, 'GET', `/api/v1/workers/${w.id}`)).json()).toMatchObject({ status: 'running' });
    const stop = await call(a.url, 'DELETE', `/api/v1/workers/${w.id}?force=true`);
    expect(await stop.json()).toMatchObject({ status: 'stopped' });
  }, 30_000);
});
