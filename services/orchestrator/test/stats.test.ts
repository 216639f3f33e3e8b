// GET /api/v1/stats and POST /api/v1/cleanup against the real worker-manager, scheduler and a
// worker process: counts of jobs that really ran, worker-manager's storage, and cleanup deleting
// the executions and logs there; worker-manager refusing (wrong token) or absent.
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startOrchestrator } from '../src/service.js';
import { call, deadUrl, eventually, fieldPaths, runEnded, withWorkerManager } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let scheduler: RunningService;
let workerManager: RunningService;
let workerId: string | undefined;
let urls: Awaited<ReturnType<typeof serviceAddresses>>['urls'];
const api = (method: string, path: string, body?: unknown, type?: string) => call(svc.url, method, path, body, type);
const wm = (method: string, path: string, body?: unknown) => call(workerManager.url, method, path, body);
const FINAL = ['completed', 'failed', 'cancelled', 'timed_out', 'lost'];

async function job(body: Record<string, unknown>): Promise<string> {
  const r = await api('POST', '/api/v1/jobs', body);
  expect(r.status).toBe(201);
  return r.body.id;
}

/** Executes the job on the worker and waits until worker-manager and the orchestrator both saw it end. */
async function run(jobId: string): Promise<{ id: string; status: string; duration_ms: number }> {
  const e = await wm('POST', '/api/v1/execute', { job_id: jobId });
  expect(e.status).toBe(202);
  const done = await eventually(async () => {
    const x = (await wm('GET', `/api/v1/executions/${e.body.id}`)).body;
    return FINAL.includes(x.status) ? x : undefined;
  }, 30_000);
  await eventually(async () => ((await api('GET', `/api/v1/jobs/${jobId}`)).body.last_execution?.status === done.status ? true : undefined), 15_000);
  return done;
}

beforeAll(async () => {
  env = createTestEnv();
  const addresses = await serviceAddresses();
  const { ports } = addresses;
  urls = addresses.urls;
  svc = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
  scheduler = await startScheduler(env.config('scheduler', { urls, port: ports.scheduler }));
  workerManager = await startWorkerManager(env.config('worker-manager', { urls, port: ports['worker-manager'], killGraceMs: 1000 }));
  const w = await wm('POST', '/api/v1/workers', { type: 'shell', name: 'stats-test', capacity: { slots: 4, cpu_cores: 4, memory_bytes: 4 * 1024 ** 3 } });
  expect(w.status).toBe(201);
  workerId = w.body.id;
  await workerOnline(scheduler.url, w.body.id, 30_000);
}, 60_000);
afterAll(async () => {
  if (workerId) await wm('DELETE', `/api/v1/workers/${workerId}?force=true`).catch(() => undefined);
  await workerManager?.stop();
  await svc?.stop();
  await scheduler?.stop();
  await env?.cleanup();
});

describe('stats', () => {
  it('counts jobs by status and priority, success rate, mean duration, and both services\' storage', async () => {
    const empty = await api('GET', '/api/v1/stats');
    expect(empty.status).toBe(200);
    expect(empty.body).toMatchObject({ total_jobs: 0, by_status: {}, by_priority: {}, success_rate: null, avg_duration_ms: null });
    expect(empty.body.storage.executions).toEqual({ rows: 0, bytes: expect.any(Number) });
    expect(empty.body.storage.logs).toEqual({ rows: 0, bytes: expect.any(Number) });

    const a = await job({ name: 'a', priority: 'high', command: 'echo a1; echo a2' });
    const b = await job({ name: 'b', priority: 10, command: 'echo b; exit 1' });
    await job({ name: 'c', command: 'true' });
    const d = await job({ name: 'd', priority: 1, command: 'sleep 0.2; echo d' });
    const ran = [await run(a), await run(b), await run(d)];
    expect(ran.map((e) => e.status)).toEqual(['completed', 'failed', 'completed']);

    const r = await api('GET', '/api/v1/stats');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      total_jobs: 4,
      by_status: { completed: 2, failed: 1, pending: 1 },
      by_priority: { '1': 1, '5': 1, '10': 2 },
      avg_duration_ms: Math.round(ran.reduce((sum, e) => sum + e.duration_ms, 0) / ran.length),
    });
    expect(r.body.success_rate).toBeCloseTo(2 / 3, 5);
    expect(r.body.storage.jobs.rows).toBe(4);
    expect(r.body.storage.jobs.bytes).toBeGreaterThan(0);
    expect(r.body.storage.job_executions.rows).toBe(3);
    expect(r.body.storage.pipelines).toEqual({ rows: 0, bytes: expect.any(Number) });
    // worker-manager's tables: three executions, four log lines (a1, a2, b, d)
    expect(r.body.storage.executions).toEqual({ rows: 3, bytes: expect.any(Number) });
    expect(r.body.storage.logs).toEqual({ rows: 4, bytes: expect.any(Number) });
    expect(r.body.storage.executions.bytes).toBeGreaterThan(0);
    expect(r.body.storage.logs.bytes).toBeGreaterThan(0);
  }, 60_000);

  it('still answers, without worker-manager storage, when worker-manager is down', async () => {
    const lonely = await startOrchestrator(withWorkerManager(env.config('orchestrator'), await deadUrl()));
    try {
      const r = await call(lonely.url, 'GET', '/api/v1/stats');
      expect(r.status).toBe(200);
      expect(Object.keys(r.body.storage).sort()).toEqual(['job_executions', 'jobs', 'pipeline_run_jobs', 'pipeline_runs', 'pipelines']);
    } finally {
      await lonely.stop();
    }
  });
});

describe('token', () => {
  it('with HODEI_API_TOKEN set, needs the bearer token and passes it on to worker-manager; a wrong one there leaves its storage out', async () => {
    // an installation of its own, every service requiring the token
    const guardedEnv = createTestEnv();
    const { ports, urls } = await serviceAddresses();
    const guardedWm = await startWorkerManager(guardedEnv.config('worker-manager', { urls, port: ports['worker-manager'], apiToken: 's3cret' }));
    const guarded = await startOrchestrator(guardedEnv.config('orchestrator', { urls, port: ports.orchestrator, apiToken: 's3cret' }));
    const mismatched = await startOrchestrator(withWorkerManager(guardedEnv.config('orchestrator', { apiToken: 'other' }), urls['worker-manager']));
    try {
      const anonymous = await call(guarded.url, 'GET', '/api/v1/stats');
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('content-type')).toContain('application/problem+json');
      expect((await call(guardedWm.url, 'GET', '/api/v1/storage')).status).toBe(401);
      const res = await fetch(`${guarded.url}/api/v1/stats`, { headers: { authorization: 'Bearer s3cret' } });
      expect(res.status).toBe(200);
      const storage = ((await res.json()) as { storage: Record<string, unknown> }).storage;
      expect(storage.executions).toEqual({ rows: 0, bytes: expect.any(Number) });
      expect(storage.logs).toEqual({ rows: 0, bytes: expect.any(Number) });

      const refused = await fetch(`${mismatched.url}/api/v1/stats`, { headers: { authorization: 'Bearer other' } });
      expect(refused.status).toBe(200);
      const partial = ((await refused.json()) as { storage: Record<string, unknown> }).storage;
      expect(Object.keys(partial).sort()).toEqual(['job_executions', 'jobs', 'pipeline_run_jobs', 'pipeline_runs', 'pipelines']);
      expect((await call(guarded.url, 'GET', '/health')).status).toBe(200);
    } finally {
      await mismatched.stop();
      await guarded.stop();
      await guardedWm.stop();
      await guardedEnv.cleanup();
    }
  }, 60_000);
});

describe('cleanup', () => {
  it('lists finished jobs on dry_run, deletes them and their executions and logs in worker-manager', async () => {
    const fresh = await job({ name: 'fresh', command: 'echo fresh' });
    const old = await job({ name: 'old', command: 'echo old' });
    const oldRunning = await job({ name: 'old-running', command: 'sleep 30' });
    const freshExec = await run(fresh);
    const oldExec = await run(old);
    const running = await wm('POST', '/api/v1/execute', { job_id: oldRunning });
    expect(running.status).toBe(202);
    await eventually(async () => ((await api('GET', `/api/v1/jobs/${oldRunning}`)).body.status === 'running' ? true : undefined), 15_000);
    // age them: two days since their last change
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = ANY ($1::uuid[])", [[old, oldRunning]]);

    const nothing = { executions: 0, older_executions: 0, adhoc_executions: 0, pipeline_runs: 0 };
    const none = await api('POST', '/api/v1/cleanup', { older_than_days: 3, dry_run: true });
    expect(none.body).toEqual({ dry_run: true, jobs: 0, job_ids: [], ...nothing });

    const dry = await api('POST', '/api/v1/cleanup', { older_than_days: 1, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toEqual({ dry_run: true, jobs: 1, job_ids: [old], ...nothing, executions: 1 });
    expect((await api('GET', `/api/v1/jobs/${old}`)).status).toBe(200);
    expect((await wm('GET', `/api/v1/executions/${oldExec.id}`)).status).toBe(200);

    const real = await api('POST', '/api/v1/cleanup', { older_than_days: 1 });
    expect(real.status).toBe(200);
    expect(real.body).toEqual({ dry_run: false, jobs: 1, job_ids: [old], ...nothing, executions: 1 });
    expect((await api('GET', `/api/v1/jobs/${old}`)).status).toBe(404);
    expect((await wm('GET', `/api/v1/executions/${oldExec.id}`)).status).toBe(404);
    expect((await wm('GET', `/api/v1/executions?job_id=${old}`)).body).toEqual([]);
    // the others, and their executions and lines, stay
    expect((await api('GET', `/api/v1/jobs/${oldRunning}`)).status).toBe(200);
    expect((await api('GET', `/api/v1/jobs/${fresh}`)).status).toBe(200);
    expect((await wm('GET', `/api/v1/executions/${running.body.id}`)).body.status).toBe('running');
    const freshLines = (await wm('GET', `/api/v1/executions/${freshExec.id}/logs`)).body.lines.map((l: { line: string }) => l.line);
    expect(freshLines).toEqual(['fresh']);
    expect((await wm('POST', `/api/v1/executions/${running.body.id}/cancel`)).status).toBe(202);
  }, 60_000);

  it('deletes old executions of jobs that ran since, of no job, and old pipeline runs, keeping each job newest', async () => {
    // a job run again and again (a schedule's) is never untouched for older_than_days; nor is a
    // pipeline run repeatedly; and POST /execute with a command makes executions of no job
    const again = await job({ name: 'again', command: 'echo again' });
    const runs = [await run(again), await run(again), await run(again)];
    const inline = await wm('POST', '/api/v1/execute', { command: 'echo inline' });
    expect(inline.status).toBe(202);
    await eventually(async () => (FINAL.includes((await wm('GET', `/api/v1/executions/${inline.body.id}`)).body.status) ? true : undefined), 30_000);
    const pipe = await api('POST', '/api/v1/pipelines', { name: 'history', jobs: [{ name: 'p', command: 'echo p' }] });
    expect(pipe.status).toBe(201);
    const pipeRun = await api('POST', `/api/v1/pipelines/${pipe.body.id}/runs`);
    expect(pipeRun.status).toBe(202);
    await eventually(async () => ((await api('GET', `/api/v1/pipeline-runs/${pipeRun.body.id}`)).body.status === 'completed' ? true : undefined), 30_000);
    const aged = [...runs.map((e) => e.id), inline.body.id];
    await workerManager.ctx.db.query("UPDATE executions SET finished_at = now() - interval '2 days' WHERE id = ANY ($1::uuid[])", [aged]);
    await svc.ctx.db.query("UPDATE job_executions SET finished_at = now() - interval '2 days' WHERE execution_id = ANY ($1::uuid[])", [aged]);
    await svc.ctx.db.query("UPDATE pipeline_runs SET finished_at = now() - interval '2 days' WHERE id = $1", [pipeRun.body.id]);

    // a dry run tells what would go of each kind, and deletes none of it
    const counts = { jobs: 0, executions: 3, older_executions: 2, adhoc_executions: 1, pipeline_runs: 1 };
    const dry = await api('POST', '/api/v1/cleanup', { older_than_days: 1, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dry_run: true, ...counts });
    for (const id of aged) expect((await wm('GET', `/api/v1/executions/${id}`)).status).toBe(200);
    expect((await api('GET', `/api/v1/pipeline-runs/${pipeRun.body.id}`)).status).toBe(200);

    const r = await api('POST', '/api/v1/cleanup', { older_than_days: 1 });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dry_run: false, ...counts });
    for (const id of [runs[0]!.id, runs[1]!.id, inline.body.id]) {
      expect((await wm('GET', `/api/v1/executions/${id}`)).status).toBe(404);
      expect((await wm('GET', `/api/v1/executions/${id}/logs`)).status).toBe(404);
    }
    // the job's newest stays, with its output, as its last execution
    const newest = (await wm('GET', `/api/v1/executions/${runs[2]!.id}/logs`)).body.lines.map((l: { line: string }) => l.line);
    expect(newest).toEqual(['again']);
    const kept = await api('GET', `/api/v1/jobs/${again}`);
    expect(kept.body.last_execution).toMatchObject({ id: runs[2]!.id, status: 'completed' });
    const records = await svc.ctx.db.query('SELECT execution_id FROM job_executions WHERE job_id = $1', [again]);
    expect(records.rows.map((x) => x.execution_id)).toEqual([runs[2]!.id]);
    expect((await api('GET', `/api/v1/pipeline-runs/${pipeRun.body.id}`)).status).toBe(404);
    expect((await api('GET', `/api/v1/pipelines/${pipe.body.id}`)).status).toBe(200);
  }, 90_000);

  it('leaves the jobs of a pipeline that last ran long ago (they go with their pipeline), and the pipeline runs them again', async () => {
    const pipe = await api('POST', '/api/v1/pipelines', {
      name: 'monthly',
      jobs: [{ name: 'build', command: 'echo build' }, { name: 'ship', command: 'echo ship', depends_on: ['build'] }],
    });
    expect(pipe.status).toBe(201);
    const ids = pipe.body.jobs.map((j: { id: string }) => j.id);
    const first = await api('POST', `/api/v1/pipelines/${pipe.body.id}/runs`);
    expect((await runEnded(svc.url, first.body.id, 30_000)).status).toBe('completed');
    const loose = await job({ name: 'loose', command: 'echo loose' });
    await run(loose);
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '40 days' WHERE id = ANY ($1::uuid[])", [[...ids, loose]]);

    const dry = await api('POST', '/api/v1/cleanup', { older_than_days: 30, dry_run: true });
    expect(dry.body.job_ids).toEqual([loose]);
    const r = await api('POST', '/api/v1/cleanup', { older_than_days: 30 });
    expect(r.body.job_ids).toEqual([loose]);
    const kept = (await api('GET', `/api/v1/pipelines/${pipe.body.id}`)).body.jobs;
    expect(kept.map((j: { name: string; depends_on: string[] }) => [j.name, j.depends_on])).toEqual([['build', []], ['ship', [ids[0]]]]);
    const again = await api('POST', `/api/v1/pipelines/${pipe.body.id}/runs`);
    expect(again.status).toBe(202);
    const done = await runEnded(svc.url, again.body.id, 30_000);
    expect(done.jobs.map((j: { name: string; status: string }) => [j.name, j.status])).toEqual([['build', 'completed'], ['ship', 'completed']]);
  }, 90_000);

  it('waits while worker-manager takes longer than 10 s to delete the logs (millions of lines do)', async () => {
    const big = await job({ name: 'big-log', command: 'seq 1 1000' });
    const exec = await run(big);
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = $1", [big]);
    // another transaction holds one of its lines for 12 s: worker-manager's delete waits for it
    // as it waits for a big delete; the orchestrator used to give up after 10 s with a 503
    const holder = await workerManager.ctx.db.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT seq FROM log_lines WHERE execution_id = $1 AND seq = 1000 FOR UPDATE', [exec.id]);
    const released = new Promise<void>((resolve) =>
      setTimeout(() => void holder.query('COMMIT').finally(() => (holder.release(), resolve())), 12_000),
    );
    const started = Date.now();
    const r = await api('POST', '/api/v1/cleanup', { older_than_days: 1 });
    await released;
    expect(Date.now() - started).toBeGreaterThanOrEqual(11_500);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ dry_run: false, jobs: 1, job_ids: [big], executions: 1 });
    expect((await api('GET', `/api/v1/jobs/${big}`)).status).toBe(404);
    expect((await wm('GET', `/api/v1/executions/${exec.id}`)).status).toBe(404);
  }, 60_000);

  it('leaves a job that a schedule may still fire (scheduled or paused), which then runs it; the job of a completed one-shot schedule goes', async () => {
    const sched = (method: string, path: string, body?: unknown) => call(scheduler.url, method, path, body);
    const yearlyJob = await job({ name: 'yearly', command: 'echo yearly' });
    const pausedJob = await job({ name: 'paused', command: 'echo paused' });
    const onceJob = await job({ name: 'once', command: 'echo once' });
    await run(yearlyJob);
    await run(pausedJob);
    const yearly = await sched('POST', '/api/v1/schedules', { job_id: yearlyJob, cron: '0 0 1 1 *' });
    const paused = await sched('POST', '/api/v1/schedules', { job_id: pausedJob, cron: '0 0 1 1 *', enabled: false });
    const once = await sched('POST', '/api/v1/schedules', { job_id: onceJob, run_at: new Date(Date.now() + 300).toISOString() });
    expect([yearly.status, paused.status, once.status]).toEqual([201, 201, 201]);
    await eventually(async () => ((await sched('GET', `/api/v1/schedules/${once.body.id}`)).body.status === 'completed' ? true : undefined), 15_000);
    await eventually(async () => (FINAL.includes((await api('GET', `/api/v1/jobs/${onceJob}`)).body.status) ? true : undefined), 30_000);
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = ANY ($1::uuid[])", [[yearlyJob, pausedJob, onceJob]]);

    for (const dryRun of [true, false]) {
      const r = await api('POST', '/api/v1/cleanup', { older_than_days: 1, dry_run: dryRun });
      expect(r.status).toBe(200);
      expect(r.body.job_ids).toContain(onceJob);
      expect(r.body.job_ids).not.toContain(yearlyJob);
      expect(r.body.job_ids).not.toContain(pausedJob);
    }
    expect((await api('GET', `/api/v1/jobs/${onceJob}`)).status).toBe(404);
    expect((await api('GET', `/api/v1/jobs/${pausedJob}`)).status).toBe(200);
    // the schedule's next firing (here, one asked for now) runs the job it still has
    const fired = await sched('POST', `/api/v1/schedules/${yearly.body.id}/run`);
    expect(fired.status).toBe(202);
    expect(fired.body).toMatchObject({ outcome: 'fired', message: null });
    const ran = await eventually(async () => {
      const x = (await wm('GET', `/api/v1/executions/${fired.body.execution_id}`)).body;
      return FINAL.includes(x.status) ? x : undefined;
    }, 30_000);
    expect(ran.status).toBe('completed');
    expect((await sched('GET', `/api/v1/schedules/${yearly.body.id}`)).body.status).toBe('scheduled');
  }, 90_000);

  it('deletes nothing and answers 503 when worker-manager or the scheduler does not answer', async () => {
    const kept = await job({ name: 'kept', command: 'exit 1' });
    const exec = await run(kept);
    expect(exec.status).toBe('failed');
    const dead = await deadUrl();
    for (const away of ['worker-manager', 'scheduler'] as const) {
      const lonely = await startOrchestrator(env.config('orchestrator', { urls: { ...urls, [away]: dead } }));
      try {
        const r = await call(lonely.url, 'POST', '/api/v1/cleanup', { older_than_days: 0 });
        expect(r.status, away).toBe(503);
        expect(r.headers.get('content-type')).toContain('application/problem+json');
        if (away === 'scheduler') expect(r.body.detail).toMatch(/^the scheduler \(asked which jobs its schedules run\) is unavailable: .*; nothing was deleted$/);
        expect((await api('GET', `/api/v1/jobs/${kept}`)).status).toBe(200);
        expect((await wm('GET', `/api/v1/executions/${exec.id}`)).status).toBe(200);
      } finally {
        await lonely.stop();
      }
    }
  }, 60_000);

  it('rejects bad cleanup bodies naming the field', async () => {
    for (const [body, field] of [
      [{}, 'older_than_days'],
      [{ older_than_days: -1 }, 'older_than_days'],
      [{ older_than_days: 'ten' }, 'older_than_days'],
      [{ older_than_days: 1e9 }, 'older_than_days'],
      [{ older_than_days: 1, dry_run: 'yes' }, 'dry_run'],
      [{ older_than_days: 1, extra: true }, 'extra'],
    ] as const) {
      const r = await api('POST', '/api/v1/cleanup', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(fieldPaths(r), JSON.stringify(body)).toContain(field);
    }
    expect((await api('POST', '/api/v1/cleanup', 'older_than_days: 1\n', 'application/yaml')).status).toBe(415);
  });
});
