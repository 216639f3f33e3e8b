// Contract tests of pipeline runs against a stand-in worker-manager (helpers.ts), with execution
// events published by hand: the orderings and answers a real installation produces rarely or never
// on demand (both copies of a final event at once, events before execute answered, a lost
// execution retried, execute refused, a job completing after its run was cancelled, worker-manager
// absent). The ordinary paths (diamond, failure, cancel) run on real services in
// pipeline-runs.stack.test.ts.
import { get as httpGet } from 'node:http';
import { createTestEnv, encodeJson, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ExecutionStatusEvent } from '@hodei/types';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, deadUrl, eventually, fakeWorkerManager, fieldPaths, openSse, withWorkerManager, type FakeWorkerManager, type SseEvent } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let wm: FakeWorkerManager;
/** job id → execution ids worker-manager handed out for it */
let executed: Map<string, string[]>;
const api = (method: string, path: string, body?: unknown) => call(svc.url, method, path, body);

async function publish(executionId: string, jobId: string, status: ExecutionStatusEvent['status'], extra: Partial<ExecutionStatusEvent> = {}): Promise<void> {
  const e: ExecutionStatusEvent = { execution_id: executionId, job_id: jobId, worker_id: null, status, timestamp: new Date().toISOString(), ...extra };
  const final = !['queued', 'running'].includes(status);
  await svc.ctx.bus.js.publish(final ? svc.ctx.bus.subjects.executionFinished : svc.ctx.bus.subjects.executionStatus(executionId), encodeJson(e));
}

const executeHandler = (req: { method: string; path: string; body: unknown }) => {
  if (req.method === 'POST' && req.path === '/api/v1/execute') {
    const jobId = (req.body as { job_id: string }).job_id;
    const id = newId();
    executed.set(jobId, [...(executed.get(jobId) ?? []), id]);
    return { status: 202, body: { id, job_id: jobId, status: 'queued', created_at: new Date().toISOString() } };
  }
  return undefined;
};

async function runState(runId: string, check: (run: any) => boolean): Promise<any> {
  return eventually(async () => {
    const r = await api('GET', `/api/v1/pipeline-runs/${runId}`);
    return check(r.body) ? r.body : undefined;
  });
}
const byName = (run: any) => Object.fromEntries(run.jobs.map((j: any) => [j.name, j]));

beforeAll(async () => {
  env = createTestEnv();
  wm = await fakeWorkerManager();
  const base = env.config('orchestrator');
  svc = await startOrchestrator(withWorkerManager(base, wm.url));
});
beforeEach(() => {
  executed = new Map();
  wm.handler = executeHandler;
});
afterAll(async () => {
  await svc?.stop();
  await wm?.close();
  await env?.cleanup();
});

const diamond = {
  name: 'diamond',
  jobs: [
    { name: 'a', command: 'echo a' },
    { name: 'b', command: 'echo b', depends_on: ['a'] },
    { name: 'c', command: 'echo c', depends_on: ['a'] },
    { name: 'd', command: 'echo d', depends_on: ['b', 'c'] },
  ],
};

describe('pipeline runs against a stand-in worker-manager (contract)', () => {
  it('a fan-out: each leaf completes on its own, a final event and its copy advance the run once', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'fan', jobs: ['x', 'y', 'z'].map((name) => ({ name, command: 'true' })) })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const seen: any[] = [];
    const sub = svc.ctx.bus.nc.subscribe(svc.ctx.bus.subjects.pipelineRun(r.id), { callback: (_e, m) => seen.push(m.json()) });
    try {
      const exec = (name: string) => executed.get(ids[name])![0]!;
      // worker-manager has answered all three executes (each job 'starting' until then)
      await runState(r.id, (x) => x.jobs.every((j: any) => j.status === 'queued'));
      await publish(exec('x'), ids.x, 'completed');
      let run = await runState(r.id, (x) => byName(x).x.status === 'completed');
      expect(run.status).toBe('running');
      expect([byName(run).y.status, byName(run).z.status]).toEqual(['queued', 'queued']);
      // the worker's own final status and worker-manager's finished copy of it
      const e: ExecutionStatusEvent = { execution_id: exec('y'), job_id: ids.y, worker_id: null, status: 'completed', exit_code: 0, timestamp: new Date().toISOString() };
      await Promise.all([
        svc.ctx.bus.js.publish(svc.ctx.bus.subjects.executionStatus(exec('y')), encodeJson(e)),
        svc.ctx.bus.js.publish(svc.ctx.bus.subjects.executionFinished, encodeJson(e)),
      ]);
      run = await runState(r.id, (x) => byName(x).y.status === 'completed');
      expect(byName(run).y.exit_code).toBe(0);
      expect(run.status).toBe('running');
      await publish(exec('z'), ids.z, 'completed');
      run = await runState(r.id, (x) => x.status === 'completed');
      expect(run.finished_at).not.toBeNull();
      await eventually(async () => (seen.some((x) => x.type === 'run' && x.status === 'completed') ? true : undefined));
      const yDone = seen.filter((x) => x.type === 'job' && x.job_id === ids.y && x.status === 'completed');
      expect(yDone).toHaveLength(1);
      expect(yDone[0]).toMatchObject({ execution_id: exec('y'), exit_code: 0 });
      expect(seen.filter((x) => x.type === 'run' && x.status === 'completed')).toHaveLength(1);
    } finally {
      sub.unsubscribe();
    }
  });

  it('follows an execution whose events arrive before worker-manager answered execute', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'fast', jobs: [{ name: 'quick', command: 'true' }, { name: 'next', command: 'true', depends_on: ['quick'] }] })).body;
    const quick = p.jobs[0].id;
    wm.handler = async (req) => {
      const reply = executeHandler(req);
      const jobId = (req.body as { job_id?: string } | undefined)?.job_id;
      if (reply && jobId === quick) {
        const eid = (reply.body as { id: string }).id;
        await publish(eid, quick, 'completed');
        await eventually(async () => ((await api('GET', `/api/v1/jobs/${quick}`)).body.status === 'completed' ? true : undefined));
      }
      return reply;
    };
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const run = await runState(r.id, (x) => byName(x).next.status === 'queued');
    expect(byName(run).quick.status).toBe('completed');
  });

  it('a lost execution retried by worker-manager keeps the run going', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'lossy', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const a = p.jobs[0].id;
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const lost = executed.get(a)![0]!;
    await publish(lost, a, 'lost');
    await runState(r.id, (x) => x.status === 'failed' && byName(x).b.status === 'skipped');
    // an execution of the job run by hand (or by another run) is not the run's retry
    const applied = async () =>
      (await svc.ctx.metrics.getSingleMetric('hodei_orchestrator_execution_events_total')!.get()).values.reduce((n, v) => n + (v.labels.outcome === 'applied' ? v.value : 0), 0);
    const before = await applied();
    const other = newId();
    await publish(other, a, 'running');
    // handled (runs derived again) once counted
    await eventually(async () => ((await applied()) > before ? true : undefined));
    expect(byName((await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body).a).toMatchObject({ status: 'lost', execution_id: lost });
    // worker-manager announces a retry with the execution it repeats
    const retry = newId();
    await publish(retry, a, 'queued', { retry_of: lost });
    await publish(retry, a, 'running');
    let run = await runState(r.id, (x) => byName(x).a.status === 'running');
    expect(run.status).toBe('running');
    expect(byName(run).a.execution_id).toBe(retry);
    expect(byName(run).b.status).toBe('waiting');
    await publish(retry, a, 'completed');
    run = await runState(r.id, (x) => byName(x).b.status === 'queued');
    expect(run.finished_at).toBeNull();
  });

  it("retries follow worker-manager's verdict (the max_retries the execution started with), not a PATCH of the job during the run", async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'patched-retries', jobs: [{ name: 'a', command: 'exit 1' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const a = p.jobs[0].id;
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const first = executed.get(a)![0]!;
    // raised while the attempt (started with max_retries 0) runs: worker-manager will not retry it
    expect((await api('PATCH', `/api/v1/jobs/${a}`, { max_retries: 3 })).status).toBe(200);
    await publish(first, a, 'failed', { exit_code: 1 });
    const failed = await runState(r.id, (x) => x.status !== 'running');
    expect(failed.status).toBe('failed');
    expect(byName(failed).a).toMatchObject({ status: 'failed', execution_id: first, exit_code: 1 });
    expect(byName(failed).b.status).toBe('skipped');

    // lowered while an attempt started with max_retries 3 runs: worker-manager retries it all the same
    const r2 = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const second = executed.get(a)![1]!;
    expect((await api('PATCH', `/api/v1/jobs/${a}`, { max_retries: 0 })).status).toBe(200);
    const retry = newId();
    await publish(second, a, 'failed', { exit_code: 1, retried_as: retry });
    const waiting = await runState(r2.id, (x) => byName(x).a.execution_id === retry);
    expect(waiting.status).toBe('running');
    expect(byName(waiting).a.status).toBe('queued');
    expect(byName(waiting).b.status).toBe('waiting');
    await publish(retry, a, 'completed', { exit_code: 0 });
    expect(byName(await runState(r2.id, (x) => byName(x).b.status === 'queued')).a.status).toBe('completed');
  });

  it('a wide fan-out is answered once its first job started; the others start in the background', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'wide-answer', jobs: Array.from({ length: 40 }, (_, i) => ({ name: `w${i}`, command: 'true' })) })).body;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let calls = 0;
    wm.handler = async (req) => {
      if (req.path === '/api/v1/execute' && calls++ > 0) await released; // worker-manager slow for all but the first
      return executeHandler(req);
    };
    try {
      const answer = await Promise.race([
        api('POST', `/api/v1/pipelines/${p.id}/runs`),
        new Promise<'no answer'>((r) => setTimeout(() => r('no answer'), 3000)),
      ]);
      expect(answer).not.toBe('no answer');
      const r = (answer as Awaited<ReturnType<typeof api>>).body;
      expect(r.status).toBe('running');
      expect(r.jobs.filter((j: { status: string }) => j.status === 'queued')).toHaveLength(1);
      expect(r.jobs.filter((j: { status: string }) => j.status === 'starting')).toHaveLength(39);
      release();
      const run = await runState(r.id, (x) => x.jobs.every((j: { status: string }) => j.status === 'queued'));
      expect(new Set(run.jobs.map((j: { execution_id: string }) => j.execution_id)).size).toBe(40);
      expect(p.jobs.every((j: { id: string }) => executed.get(j.id)?.length === 1)).toBe(true);
    } finally {
      release();
    }
  });

  it('starts cut short by a stopping orchestrator stay claimed for the next one, not failed', async () => {
    const other = await startOrchestrator(withWorkerManager(env.config('orchestrator'), wm.url));
    const p = (await call(other.url, 'POST', '/api/v1/pipelines', { name: 'stopping', jobs: Array.from({ length: 30 }, (_, i) => ({ name: `s${i}`, command: 'true' })) })).body;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let calls = 0;
    // worker-manager holds all but the first execute, then answers 503 as it does when it cannot read the job from a stopped orchestrator
    wm.handler = async (req) => {
      if (req.path !== '/api/v1/execute' || calls++ === 0) return executeHandler(req);
      await released;
      return { status: 503, body: { title: 'Service Unavailable', status: 503, detail: 'the orchestrator did not answer' } };
    };
    const r = (await call(other.url, 'POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const stopped = other.stop();
    release();
    await stopped;
    const run = (await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body;
    expect(run.status).toBe('running');
    expect(run.jobs.filter((j: { status: string }) => j.status === 'failed')).toEqual([]);
    expect(run.jobs.filter((j: { status: string }) => j.status === 'starting')).toHaveLength(29);
    wm.handler = (req) => (req.path.endsWith('/cancel') ? { status: 202, body: {} } : executeHandler(req));
    expect((await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`)).status).toBe(202);
  });

  it('a job worker-manager refuses to start fails, with the reason', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'refused', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    wm.handler = (req) => (req.path === '/api/v1/execute' ? { status: 400, body: { title: 'Bad Request', status: 400, detail: 'no worker can run it' } } : undefined);
    const r = await api('POST', `/api/v1/pipelines/${p.id}/runs`);
    expect(r.status).toBe(202);
    expect(r.body.status).toBe('failed');
    expect(byName(r.body).a).toMatchObject({ status: 'failed', execution_id: null });
    expect(byName(r.body).a.message).toContain('no worker can run it');
    expect(byName(r.body).b).toMatchObject({ status: 'skipped', message: 'skipped: it depends on a, which ended failed' });
  });

  it('a later job worker-manager did not take (503) waits in starting, saying why once on the event stream, and starts when it takes it', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'wm-503', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const detail = 'the message bus (NATS) is unavailable: this service lost its connection to it 1 s ago and is reconnecting; nothing was done, try again';
    const startsOfB = () => wm.requests.filter((q) => q.path === '/api/v1/execute' && (q.body as { job_id: string }).job_id === ids.b).length;
    let unavailable = true;
    wm.handler = (req) => {
      // asked again, the sweep first looks for an execution of the run that worker-manager has: none
      if (req.method === 'GET' && req.path === '/api/v1/executions') return { status: 200, body: [] };
      if (unavailable && req.path === '/api/v1/execute' && (req.body as { job_id: string }).job_id === ids.b) return { status: 503, body: { title: 'Service Unavailable', status: 503, detail } };
      return executeHandler(req);
    };
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const seen: any[] = [];
    const sub = svc.ctx.bus.nc.subscribe(svc.ctx.bus.subjects.pipelineRun(r.id), { callback: (_e, m) => seen.push(m.json()) });
    try {
      const before = startsOfB();
      await publish(executed.get(ids.a)![0]!, ids.a, 'completed');
      const waiting = await eventually(async () => {
        const x = (await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body;
        return byName(x).b.message ? x : undefined;
      }, 10_000);
      expect(waiting.status).toBe('running');
      expect(byName(waiting).b).toMatchObject({
        status: 'starting',
        execution_id: null,
        message: `worker-manager unavailable, retrying every 5 s for up to 5 min: ${wm.url}/api/v1/execute answered 503: ${detail}`,
      });
      // the sweep asks again, and again waits
      await eventually(async () => (startsOfB() - before >= 2 ? true : undefined), 15_000);
      expect(byName((await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body).b.status).toBe('starting');
      unavailable = false;
      const run = await eventually(async () => {
        const x = (await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body;
        return byName(x).b.status === 'queued' ? x : undefined;
      }, 15_000);
      expect(byName(run).b).toMatchObject({ execution_id: executed.get(ids.b)![0], message: null });
      expect(executed.get(ids.b)).toHaveLength(1);
      await eventually(async () => (seen.some((x) => x.job_id === ids.b && x.status === 'queued') ? true : undefined));
      expect(seen.filter((x) => x.type === 'job' && x.job_id === ids.b).map((x) => [x.status, x.message ?? null])).toEqual([
        ['starting', null],
        ['starting', byName(waiting).b.message],
        ['queued', null],
      ]);
      await publish(executed.get(ids.b)![0]!, ids.b, 'completed');
      expect((await runState(r.id, (x) => x.status !== 'running')).status).toBe('completed');
    } finally {
      sub.unsubscribe();
    }
  }, 40_000);

  it('a later job worker-manager refuses (4xx), or answers 500 to (it may have acted), fails at once with the reason and is not asked again', async () => {
    const p = (await api('POST', '/api/v1/pipelines', {
      name: 'wm-refuses-later',
      jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }, { name: 'c', command: 'true', depends_on: ['a'] }],
    })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const startsOf = (name: string) => wm.requests.filter((q) => q.path === '/api/v1/execute' && (q.body as { job_id: string }).job_id === ids[name]).length;
    wm.handler = (req) => {
      const jobId = req.path === '/api/v1/execute' ? (req.body as { job_id: string }).job_id : undefined;
      if (jobId === ids.b) return { status: 400, body: { title: 'Bad Request', status: 400, detail: 'the job cannot run: no command' } };
      if (jobId === ids.c) return { status: 500, body: { title: 'Internal Server Error', status: 500, detail: 'database went away mid-insert' } };
      return executeHandler(req);
    };
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    await publish(executed.get(ids.a)![0]!, ids.a, 'completed');
    const run = await runState(r.id, (x) => x.status !== 'running');
    expect(run.status).toBe('failed');
    expect(byName(run).b).toMatchObject({ status: 'failed', execution_id: null, message: 'could not start: the job cannot run: no command' });
    expect(byName(run).c).toMatchObject({ status: 'failed', execution_id: null, message: `could not start: ${wm.url}/api/v1/execute answered 500: database went away mid-insert` });
    await new Promise((resolve) => setTimeout(resolve, 6000)); // over one sweep
    expect([startsOf('b'), startsOf('c')]).toEqual([1, 1]);
  }, 20_000);

  it('a run cancelled while a job waits for worker-manager: the job is skipped and never started', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'wm-away-cancel', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    wm.handler = (req) => {
      if (req.method === 'GET' && req.path === '/api/v1/executions') return { status: 200, body: [] };
      if (req.path === '/api/v1/execute' && (req.body as { job_id: string }).job_id === ids.b) return { status: 503, body: { title: 'Service Unavailable', status: 503 } };
      return executeHandler(req);
    };
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    await publish(executed.get(ids.a)![0]!, ids.a, 'completed');
    await eventually(async () => (byName((await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body).b.message ? true : undefined), 10_000);
    expect((await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`)).status).toBe(202);
    const run = await eventually(async () => {
      const x = (await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body;
      return x.status !== 'running' ? x : undefined;
    }, 15_000);
    expect(run.status).toBe('cancelled');
    expect(byName(run).b).toMatchObject({ status: 'skipped', execution_id: null, message: 'skipped: the run was cancelled' });
    wm.handler = (req) => (req.method === 'GET' && req.path === '/api/v1/executions' ? { status: 200, body: [] } : executeHandler(req)); // worker-manager back
    await new Promise((resolve) => setTimeout(resolve, 6000)); // over one sweep
    expect(executed.get(ids.b)).toBeUndefined();
  }, 40_000);

  it('cancels a run: waiting jobs are skipped, active executions are cancelled', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { ...diamond, name: 'to-cancel' })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const aExec = executed.get(ids.a)![0]!;
    // before any event: only the root started, with the execution worker-manager handed out
    expect(byName(r)).toMatchObject({ a: { status: 'queued', execution_id: aExec }, b: { status: 'waiting' }, c: { status: 'waiting' }, d: { status: 'waiting' } });
    expect([...executed.keys()]).toEqual([ids.a]);
    await publish(aExec, ids.a, 'running');
    await runState(r.id, (x) => byName(x).a.status === 'running');
    wm.requests.length = 0;
    wm.handler = (req) => (req.path.endsWith('/cancel') ? { status: 202, body: {} } : executeHandler(req));
    const c = await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`);
    expect(c.status).toBe(202);
    const cancelled = { status: 'skipped', message: 'skipped: the run was cancelled' };
    expect(byName(c.body)).toMatchObject({ a: { status: 'running' }, b: cancelled, c: cancelled, d: cancelled });
    expect(c.body.status).toBe('running');
    expect(wm.requests.map((q) => `${q.method} ${q.path}`)).toEqual([`POST /api/v1/executions/${aExec}/cancel`]);
    // even if a completes after all, nothing more starts
    await publish(aExec, ids.a, 'completed');
    const run = await runState(r.id, (x) => x.status !== 'running');
    expect(run.status).toBe('cancelled');
    expect(run.finished_at).not.toBeNull();
    expect(executed.has(ids.b)).toBe(false);
    const again = await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`);
    expect(again.status).toBe(409);
    expect((await api('POST', `/api/v1/pipeline-runs/${newId()}/cancel`)).status).toBe(404);
  });

  it('a job a running run has yet to run cannot be deleted, nor its pipeline, nor cleaned up (409 naming the run)', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'kept', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    // a first run ends: both jobs completed; cleanup leaves them, as jobs of a pipeline
    const r1 = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    await publish(executed.get(ids.a)![0]!, ids.a, 'completed');
    await publish((await eventually(async () => executed.get(ids.b)?.[0]))!, ids.b, 'completed');
    await runState(r1.id, (x) => x.status === 'completed');
    const cleanable = async () => (await api('POST', '/api/v1/cleanup', { older_than_days: 0, dry_run: true })).body.job_ids as string[];
    expect(await cleanable()).toEqual([]);

    // a second run: a handed to worker-manager (no event yet), b waits for it
    const r2 = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    expect(byName(r2)).toMatchObject({ a: { status: 'queued' }, b: { status: 'waiting' } });
    for (const name of ['a', 'b']) {
      const del = await api('DELETE', `/api/v1/jobs/${ids[name]}`);
      expect(del.status, name).toBe(409);
      expect(del.headers.get('content-type')).toContain('application/problem+json');
      expect(del.body.detail).toContain(r2.id);
    }
    const delPipeline = await api('DELETE', `/api/v1/pipelines/${p.id}`);
    expect(delPipeline.status).toBe(409);
    expect(delPipeline.body.detail).toContain(r2.id);
    // b, moved out of the pipeline, would be cleaned up as a finished job of none, but r2 has yet to run it
    expect((await api('PATCH', `/api/v1/jobs/${ids.b}`, { pipeline_id: null, depends_on: [] })).status).toBe(200);
    expect(await cleanable()).toEqual([]);

    await publish(executed.get(ids.a)![1]!, ids.a, 'completed');
    await publish((await eventually(async () => executed.get(ids.b)?.[1]))!, ids.b, 'completed');
    expect((await runState(r2.id, (x) => x.status !== 'running')).status).toBe('completed');
    expect((await api('DELETE', `/api/v1/jobs/${ids.b}`)).status).toBe(204);
    expect((await api('DELETE', `/api/v1/pipelines/${p.id}`)).status).toBe(204);
  });

  it("the run's event stream gives ids; reconnecting with Last-Event-ID sends what changed since, no snapshot, then goes on live", async () => {
    const p = (await api('POST', '/api/v1/pipelines', { ...diamond, name: 'resumed' })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const exec = (name: string) => executed.get(ids[name])![0]!;
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const url = `${svc.url}/api/v1/pipeline-runs/${r.id}/events/stream`;
    const lastId = (events: SseEvent[]) => events.findLast((e) => e.id !== undefined)?.id;
    const jobStates = (events: SseEvent[]) => events.filter((e) => e.event === 'job').map((e) => `${e.data.name} ${e.data.status}`);

    const first = await openSse(url);
    await eventually(async () => (first.events.length ? true : undefined));
    expect(first.events[0]).toMatchObject({ event: 'snapshot' });
    expect(first.events[0]!.id).toMatch(/^\d+$/);
    await publish(exec('a'), ids.a, 'running');
    await eventually(async () => (jobStates(first.events).includes('a running') ? true : undefined));
    const seen = lastId(first.events)!;
    expect(first.events.at(-1)!.id).toBe(seen); // the last event read carries the id
    expect(BigInt(seen)).toBeGreaterThanOrEqual(BigInt(first.events[0]!.id!));
    first.close();

    // while nobody listens: a completes, b and c start
    await publish(exec('a'), ids.a, 'completed');
    await runState(r.id, (x) => byName(x).b.status === 'queued' && byName(x).c.status === 'queued');

    const second = await openSse(url, { 'Last-Event-ID': seen });
    expect(second.status).toBe(200);
    await eventually(async () => (['a completed', 'b queued', 'c queued'].every((s) => jobStates(second.events).includes(s)) ? true : undefined));
    expect(second.events.map((e) => e.event)).not.toContain('snapshot');
    expect(jobStates(second.events)).not.toContain('a running');
    expect(second.events.at(-1)!.id).toMatch(/^\d+$/);
    // then live, to the end
    await publish(executed.get(ids.b)![0]!, ids.b, 'completed');
    await publish(executed.get(ids.c)![0]!, ids.c, 'completed');
    await publish((await eventually(async () => executed.get(ids.d)?.[0]))!, ids.d, 'completed');
    await second.ended;
    expect(jobStates(second.events)).toEqual(expect.arrayContaining(['b completed', 'c completed', 'd completed']));
    expect(second.events.at(-1)).toMatchObject({ event: 'completed', data: { status: 'completed' } });
    expect(BigInt(second.events.at(-1)!.id!)).toBeGreaterThanOrEqual(BigInt(seen));

    // an EventSource reconnecting after the end gets `completed` again and nothing else
    const third = await openSse(url, { 'Last-Event-ID': lastId(second.events)! });
    await third.ended;
    expect(third.events.map((e) => e.event)).toEqual(['completed']);

    for (const bad of ['abc', '-1', '1.5', '18446744073709551616']) {
      const r2 = await fetch(url, { headers: { 'Last-Event-ID': bad } });
      expect(r2.status, bad).toBe(400);
      expect(fieldPaths({ status: r2.status, headers: r2.headers, body: await r2.json() }), bad).toEqual(['Last-Event-ID']);
    }
  });

  it('the stream of every run gives each event its sequence as id; Last-Event-ID picks up after it', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'dashboard', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const [a, b] = p.jobs.map((j: { id: string }) => j.id);
    const url = `${svc.url}/api/v1/pipeline-runs/events/stream`;
    const consumers = async () => {
      let n = 0;
      for await (const _ of svc.ctx.bus.jsm.consumers.list(svc.ctx.bus.subjects.eventsStream)) n += 1;
      return n;
    };
    const before = await consumers();
    const first = await openSse(url);
    await eventually(async () => (first.events.length ? true : undefined));
    expect(first.events[0]!.event).toBe('connected');
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const ofRun = (events: SseEvent[]) => events.filter((e) => e.event === 'run_event' && e.data.run_id === r.id);
    const names: Record<string, string> = { [a]: 'a', [b]: 'b' };
    const what = (e: SseEvent) => (e.data.type === 'job' ? `job ${names[e.data.job_id]} ${e.data.status}` : `run ${e.data.status}`);
    await eventually(async () => (ofRun(first.events).some((e) => what(e) === 'job a queued') ? true : undefined));
    first.close();
    const seen = ofRun(first.events);
    for (const e of seen) expect(e.id).toMatch(/^\d+$/);
    const last = seen.at(-1)!.id!;

    await publish(executed.get(a)![0]!, a, 'completed');
    await publish((await eventually(async () => executed.get(b)?.[0]))!, b, 'completed');
    await runState(r.id, (x) => x.status === 'completed');

    const second = await openSse(url, { 'Last-Event-ID': last });
    await eventually(async () => (ofRun(second.events).some((e) => what(e) === 'run completed') ? true : undefined));
    second.close();
    const resumed = ofRun(second.events);
    expect(resumed.map(what)).toEqual(['job a completed', 'job b starting', 'job b queued', 'job b completed', 'run completed']);
    const ids = resumed.map((e) => Number(e.id));
    expect(ids[0]).toBeGreaterThan(Number(last));
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    // a dashboard shows each job event by name, whatever its status (queued ones came without)
    for (const e of [...seen, ...resumed].filter((x) => x.data.type === 'job')) expect([what(e), e.data.name]).toEqual([what(e), names[e.data.job_id]]);

    const bad = await fetch(url, { headers: { 'Last-Event-ID': 'x' } });
    expect(bad.status).toBe(400);
    // each stream's consumer goes with it, not 5 minutes later
    await eventually(async () => ((await consumers()) === before ? true : undefined));
  });

  it('a dashboard that hangs up while its stream is being set up leaves no consumer behind', async () => {
    const consumers = async () => {
      let n = 0;
      for await (const _ of svc.ctx.bus.jsm.consumers.list(svc.ctx.bus.subjects.eventsStream)) n += 1;
      return n;
    };
    const before = await consumers();
    // each client leaves a few ms after asking, some of them before the route created its consumer
    // (a page reload, a proxy timeout): the consumer of such a stream was pulled for ever
    const hangUpAfter = (ms: number) =>
      new Promise<void>((resolve) => {
        const req = httpGet(`${svc.url}/api/v1/pipeline-runs/events/stream`, (res) => res.resume());
        req.on('error', () => undefined);
        setTimeout(() => resolve(void req.destroy()), ms);
      });
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        for (let k = 0; k < 20; k++) await hangUpAfter((i + k) % 15);
      }),
    );
    await eventually(async () => ((await consumers()) === before ? true : undefined), 10_000);
  });

  it('counts its open event streams in hodei_sse_subscribers, down again when a client goes, abruptly too', async () => {
    const subscribers = async () => {
      const text = await (await fetch(`${svc.url}/metrics`)).text();
      return Number(/^hodei_sse_subscribers\{service="orchestrator"\} (\d+)$/m.exec(text)?.[1]);
    };
    const before = await subscribers();
    const p = (await api('POST', '/api/v1/pipelines', { name: 'watched', jobs: [{ name: 'a', command: 'true' }] })).body;
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    const one = await openSse(`${svc.url}/api/v1/pipeline-runs/${r.id}/events/stream`);
    const all = await openSse(`${svc.url}/api/v1/pipeline-runs/events/stream`);
    const cut = await new Promise<ReturnType<typeof httpGet>>((resolve) => {
      const req = httpGet(`${svc.url}/api/v1/pipeline-runs/events/stream`, (res) => {
        res.resume();
        resolve(req);
      });
      req.on('error', () => undefined);
    });
    expect(await eventually(async () => ((await subscribers()) === before + 3 ? true : undefined))).toBe(true);
    cut.socket?.destroy();
    all.close();
    await eventually(async () => ((await subscribers()) === before + 1 ? true : undefined));
    await publish(executed.get(p.jobs[0].id)![0]!, p.jobs[0].id, 'completed', { exit_code: 0 });
    await one.ended;
    await eventually(async () => ((await subscribers()) === before ? true : undefined));
  });

  it('a run cancelled while its fan-out is being started: the starts not sent yet never are, the jobs are skipped', async () => {
    const fan = Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, command: 'true', depends_on: ['root'] }));
    const p = (await api('POST', '/api/v1/pipelines', { name: 'fan-cancel', jobs: [{ name: 'root', command: 'true' }, ...fan] })).body;
    const ids = Object.fromEntries(p.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    // worker-manager holds the fan-out's executes until the cancel has been answered
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held: string[] = [];
    wm.handler = async (req) => {
      if (req.path.endsWith('/cancel')) return { status: 202, body: {} };
      if (req.path === '/api/v1/execute') {
        held.push((req.body as { job_id: string }).job_id);
        await gate;
      }
      return executeHandler(req);
    };
    wm.requests.length = 0;
    await publish(executed.get(ids.root)![0]!, ids.root, 'completed');
    // every start sent at once has arrived: none came for a second
    for (let seen = -1; seen !== held.length; ) {
      seen = held.length;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    expect((await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`)).status).toBe(202);
    const inFlight = held.length;
    expect(inFlight).toBeGreaterThan(0);
    expect(inFlight).toBeLessThan(fan.length);
    release();
    const cancelled = () => wm.requests.filter((q) => q.path.endsWith('/cancel')).map((q) => q.path.split('/')[4]);
    await eventually(async () => (cancelled().length >= inFlight ? true : undefined));
    const started = fan.flatMap((f) => executed.get(ids[f.name]) ?? []);
    expect(started.length).toBe(inFlight);
    expect(new Set(cancelled())).toEqual(new Set(started));
    for (const f of fan) for (const id of executed.get(ids[f.name]) ?? []) await publish(id, ids[f.name], 'cancelled');
    const run = await runState(r.id, (x) => x.status !== 'running');
    expect(run.status).toBe('cancelled');
    const jobs = byName(run);
    const skipped = fan.filter((f) => jobs[f.name].status === 'skipped');
    expect(skipped.length).toBe(fan.length - inFlight);
    for (const f of skipped) expect(jobs[f.name]).toMatchObject({ execution_id: null, message: 'skipped: the run was cancelled' });
    expect(fan.filter((f) => jobs[f.name].status === 'cancelled').length).toBe(inFlight);
  }, 30_000);

  it('a cancel cut short (worker-manager failing mid-way) is finished by the next orchestrator start', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'cut-short', jobs: ['x', 'y', 'z'].map((name) => ({ name, command: 'sleep 60' })) })).body;
    const r = (await api('POST', `/api/v1/pipelines/${p.id}/runs`)).body;
    // only the first start is answered before the 202: the others go on in the background
    await runState(r.id, (x) => x.jobs.every((j: { status: string }) => j.status === 'queued'));
    const started = p.jobs.map((j: { id: string }) => executed.get(j.id)![0]!);
    await publish(started[0], p.jobs[0].id, 'running');
    await runState(r.id, (x) => byName(x).x.status === 'running');
    wm.handler = (req) => (req.path.endsWith('/cancel') ? { status: 503, body: { title: 'Service Unavailable', status: 503 } } : executeHandler(req));
    const c = await api('POST', `/api/v1/pipeline-runs/${r.id}/cancel`);
    expect(c.status).toBe(502); // worker-manager answered 503
    expect((await api('GET', `/api/v1/pipeline-runs/${r.id}`)).body.status).toBe('running');

    wm.requests.length = 0;
    const cancelled = new Set<string>();
    wm.handler = (req) => {
      const m = /^\/api\/v1\/executions\/([^/]+)\/cancel$/.exec(req.path);
      if (!m) return executeHandler(req);
      cancelled.add(m[1]!);
      return { status: 202, body: {} };
    };
    const next = await startOrchestrator(withWorkerManager(env.config('orchestrator'), wm.url));
    try {
      await eventually(async () => (started.every((id: string) => cancelled.has(id)) ? true : undefined));
    } finally {
      await next.stop();
    }
    for (const [i, id] of started.entries()) await publish(id, p.jobs[i].id, 'cancelled');
    expect((await runState(r.id, (x) => x.status !== 'running')).status).toBe('cancelled');
  });

  it('refuses runs that cannot start', async () => {
    expect((await api('POST', `/api/v1/pipelines/${newId()}/runs`)).status).toBe(404);
    expect((await api('GET', `/api/v1/pipelines/${newId()}/runs`)).status).toBe(404);
    expect((await api('GET', `/api/v1/pipeline-runs/${newId()}`)).status).toBe(404);
    expect((await api('GET', '/api/v1/pipeline-runs/nope')).status).toBe(400);
    const empty = (await api('POST', '/api/v1/pipelines', { name: 'empty' })).body;
    expect((await api('POST', `/api/v1/pipelines/${empty.id}/runs`)).status).toBe(409);
    const idle = (await api('POST', '/api/v1/pipelines', { name: 'idle', jobs: [{ name: 'nothing-to-do' }] })).body;
    const r = await api('POST', `/api/v1/pipelines/${idle.id}/runs`);
    expect(r.status).toBe(409);
    expect(r.body.detail).toContain('nothing-to-do');
    // a cycle left by an older version (concurrent PATCHes could close one): 409 naming it, nothing started
    const cyclic = (await api('POST', '/api/v1/pipelines', { name: 'cyclic', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    await svc.ctx.db.query('UPDATE jobs SET depends_on = ARRAY[$1::uuid] WHERE id = $2', [cyclic.jobs[1].id, cyclic.jobs[0].id]);
    const c = await api('POST', `/api/v1/pipelines/${cyclic.id}/runs`);
    expect(c.status).toBe(409);
    expect(c.body.detail).toMatch(/cycle.*(a → b → a|b → a → b)/);
    const archived = (await api('POST', '/api/v1/pipelines', { name: 'old', jobs: [{ name: 'a', command: 'true' }] })).body;
    await api('PATCH', `/api/v1/pipelines/${archived.id}`, { status: 'archived' });
    expect((await api('POST', `/api/v1/pipelines/${archived.id}/runs`)).status).toBe(409);
    expect(executed.size).toBe(0);
  });

  it("refuses with 413 a run whose env makes a job's definition larger than NATS carries, keeping no run", async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'big-env', jobs: [{ name: 'small', command: 'true' }, { name: 'large', script: 'x'.repeat(500_000) }] })).body;
    // each entry fits in execve, together with the large job's script they are over NATS's 1 MiB
    const env = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`PART_${i}`, 'y'.repeat(100_000)]));
    const r = await api('POST', `/api/v1/pipelines/${p.id}/runs`, { env });
    expect(r.status).toBe(413);
    expect(r.body.detail).toMatch(/^job large with the run's env is \d+ bytes as JSON, most of it in env; NATS carries at most \d+/);
    expect((await api('GET', `/api/v1/pipelines/${p.id}/runs`)).body).toEqual([]);
    expect(executed.size).toBe(0);
    const fits = await api('POST', `/api/v1/pipelines/${p.id}/runs`, { env: { PART: 'y'.repeat(100_000) } });
    expect(fits.status).toBe(202);
    await api('POST', `/api/v1/pipeline-runs/${fits.body.id}/cancel`);
  });

  it('answers 503 and keeps no run when worker-manager answers 503 to the first start (its message bus down)', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'bus-down', jobs: [{ name: 'a', command: 'true' }] })).body;
    const detail = 'the message bus (NATS) is unavailable: this service lost its connection to it 1 s ago and is reconnecting; nothing was done, try again';
    wm.handler = (req) => (req.path === '/api/v1/execute' ? { status: 503, body: { title: 'Service Unavailable', status: 503, detail } } : undefined);
    const r = await call(svc.url, 'POST', `/api/v1/pipelines/${p.id}/runs`);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
    expect(r.body.detail).toBe(`${wm.url}/api/v1/execute answered 503: ${detail}`);
    expect((await api('GET', `/api/v1/pipelines/${p.id}/runs`)).body).toEqual([]);
  });

  it('answers 503 and keeps no run when worker-manager is down', async () => {
    const base = env.config('orchestrator');
    const lonely = await startOrchestrator(withWorkerManager(base, await deadUrl()));
    try {
      const p = (await call(lonely.url, 'POST', '/api/v1/pipelines', { name: 'unreachable', jobs: [{ name: 'a', command: 'true' }] })).body;
      const r = await call(lonely.url, 'POST', `/api/v1/pipelines/${p.id}/runs`);
      expect(r.status).toBe(503);
      const list = await call(lonely.url, 'GET', `/api/v1/pipelines/${p.id}/runs`);
      expect(list.body).toEqual([]);
    } finally {
      await lonely.stop();
    }
  });
});
