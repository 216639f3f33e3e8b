// GET /api/v1/stats and POST /api/v1/cleanup, with worker-manager answering, failing or absent.
import { createTestEnv, encodeJson, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ExecutionStatusEvent } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, deadUrl, eventually, fakeWorkerManager, fieldPaths, withWorkerManager, type FakeWorkerManager } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let wm: FakeWorkerManager;
const api = (method: string, path: string, body?: unknown, type?: string) => call(svc.url, method, path, body, type);

async function finish(jobId: string, status: ExecutionStatusEvent['status'], duration_ms: number): Promise<void> {
  const e: ExecutionStatusEvent = {
    execution_id: newId(), job_id: jobId, worker_id: null, status, exit_code: status === 'completed' ? 0 : 1, duration_ms, timestamp: new Date().toISOString(),
  };
  await svc.ctx.bus.js.publish(svc.ctx.bus.subjects.executionFinished, encodeJson(e));
  await eventually(async () => ((await api('GET', `/api/v1/jobs/${jobId}`)).body.status === status ? true : undefined));
}

beforeAll(async () => {
  env = createTestEnv();
  wm = await fakeWorkerManager();
  const base = env.config('orchestrator');
  svc = await startOrchestrator(withWorkerManager(base, wm.url));
});
afterAll(async () => {
  await svc?.stop();
  await wm?.close();
  await env?.cleanup();
});

describe('stats', () => {
  it('counts jobs by status and priority, success rate, mean duration and storage', async () => {
    const empty = await api('GET', '/api/v1/stats');
    expect(empty.status).toBe(200);
    expect(empty.body).toMatchObject({ total_jobs: 0, by_status: {}, by_priority: {}, success_rate: null, avg_duration_ms: null });

    const a = (await api('POST', '/api/v1/jobs', { name: 'a', priority: 'high' })).body;
    const b = (await api('POST', '/api/v1/jobs', { name: 'b', priority: 10 })).body;
    await api('POST', '/api/v1/jobs', { name: 'c' });
    const d = (await api('POST', '/api/v1/jobs', { name: 'd', priority: 1 })).body;
    await finish(a.id, 'completed', 100);
    await finish(b.id, 'completed', 300);
    await finish(d.id, 'failed', 200);

    wm.handler = (req) =>
      req.path === '/api/v1/storage' ? { status: 200, body: { executions: { rows: 7, bytes: 8192 }, logs: { rows: 70, bytes: 16384 } } } : undefined;
    const r = await api('GET', '/api/v1/stats');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      total_jobs: 4,
      by_status: { completed: 2, failed: 1, pending: 1 },
      by_priority: { '1': 1, '5': 1, '10': 2 },
      avg_duration_ms: 200,
    });
    expect(r.body.success_rate).toBeCloseTo(2 / 3, 5);
    expect(r.body.storage.jobs.rows).toBe(4);
    expect(r.body.storage.jobs.bytes).toBeGreaterThan(0);
    expect(r.body.storage.job_executions.rows).toBe(3);
    expect(r.body.storage.pipelines).toEqual({ rows: 0, bytes: expect.any(Number) });
    expect(r.body.storage.executions).toEqual({ rows: 7, bytes: 8192 });
    expect(r.body.storage.logs).toEqual({ rows: 70, bytes: 16384 });
  });

  it('still answers, without worker-manager storage, when worker-manager is down', async () => {
    wm.handler = () => ({ status: 500, body: { title: 'boom' } });
    const failing = await api('GET', '/api/v1/stats');
    expect(failing.status).toBe(200);
    expect(failing.body.storage.executions).toBeUndefined();
    expect(failing.body.storage.jobs).toBeDefined();

    const base = env.config('orchestrator');
    const lonely = await startOrchestrator(withWorkerManager(base, await deadUrl()));
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
  it('with HODEI_API_TOKEN set, needs the bearer token and passes it on to worker-manager', async () => {
    const base = env.config('orchestrator');
    const guarded = await startOrchestrator(withWorkerManager({ ...base, apiToken: 's3cret' }, wm.url));
    try {
      wm.requests.length = 0;
      wm.handler = (req) => (req.path === '/api/v1/storage' ? { status: 200, body: { executions: { rows: 1, bytes: 1 }, logs: { rows: 1, bytes: 1 } } } : undefined);
      const anonymous = await call(guarded.url, 'GET', '/api/v1/stats');
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('content-type')).toContain('application/problem+json');
      const res = await fetch(`${guarded.url}/api/v1/stats`, { headers: { authorization: 'Bearer s3cret' } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { storage: Record<string, unknown> }).storage.executions).toEqual({ rows: 1, bytes: 1 });
      expect(wm.requests.map((r) => r.authorization)).toEqual(['Bearer s3cret']);
      expect((await call(guarded.url, 'GET', '/health')).status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });
});

describe('cleanup', () => {
  it('lists finished jobs on dry_run, deletes them and asks worker-manager for their executions', async () => {
    const fresh = (await api('POST', '/api/v1/jobs', { name: 'fresh' })).body;
    const old = (await api('POST', '/api/v1/jobs', { name: 'old' })).body;
    await finish(old.id, 'completed', 10);
    const oldRunning = (await api('POST', '/api/v1/jobs', { name: 'old-running' })).body;
    await svc.ctx.bus.js.publish(
      svc.ctx.bus.subjects.executionStatus(newId()),
      encodeJson({ execution_id: newId(), job_id: oldRunning.id, worker_id: null, status: 'running', timestamp: new Date().toISOString() }),
    );
    await eventually(async () => ((await api('GET', `/api/v1/jobs/${oldRunning.id}`)).body.status === 'running' ? true : undefined));
    // age them: two days since their last change
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = ANY ($1::uuid[])", [[old.id, oldRunning.id, fresh.id]]);

    wm.requests.length = 0;
    wm.handler = (req) => (req.path === '/api/v1/executions/cleanup' ? { status: 200, body: { executions: 1 } } : undefined);

    const none = await api('POST', '/api/v1/cleanup', { older_than_days: 3, dry_run: true });
    expect(none.body).toEqual({ dry_run: true, jobs: 0, job_ids: [], executions: null });

    const dry = await api('POST', '/api/v1/cleanup', { older_than_days: 1, dry_run: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toEqual({ dry_run: true, jobs: 1, job_ids: [old.id], executions: null });
    expect((await api('GET', `/api/v1/jobs/${old.id}`)).status).toBe(200);
    expect(wm.requests).toHaveLength(0);

    const real = await api('POST', '/api/v1/cleanup', { older_than_days: 1 });
    expect(real.status).toBe(200);
    expect(real.body).toEqual({ dry_run: false, jobs: 1, job_ids: [old.id], executions: 1 });
    expect(wm.requests).toEqual([expect.objectContaining({ method: 'POST', path: '/api/v1/executions/cleanup', body: { job_ids: [old.id] } })]);
    expect((await api('GET', `/api/v1/jobs/${old.id}`)).status).toBe(404);
    expect((await api('GET', `/api/v1/jobs/${oldRunning.id}`)).status).toBe(200);
    expect((await api('GET', `/api/v1/jobs/${fresh.id}`)).status).toBe(200);
  });

  it('deletes nothing and answers 503 when worker-manager does not answer', async () => {
    const j = (await api('POST', '/api/v1/jobs', { name: 'kept' })).body;
    await finish(j.id, 'failed', 10);
    const base = env.config('orchestrator');
    const lonely = await startOrchestrator(withWorkerManager(base, await deadUrl()));
    try {
      const r = await call(lonely.url, 'POST', '/api/v1/cleanup', { older_than_days: 0 });
      expect(r.status).toBe(503);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect((await api('GET', `/api/v1/jobs/${j.id}`)).status).toBe(200);
    } finally {
      await lonely.stop();
    }
  });

  it('rejects bad cleanup bodies naming the field', async () => {
    for (const [body, field] of [
      [{}, 'older_than_days'],
      [{ older_than_days: -1 }, 'older_than_days'],
      [{ older_than_days: 'ten' }, 'older_than_days'],
      [{ older_than_days: 1e9 }, 'older_than_days'],
      [{ older_than_days: 1, dry_run: 'yes' }, 'dry_run'],
      [{ older_than_days: 1, extra: true }, 'body'],
    ] as const) {
      const r = await api('POST', '/api/v1/cleanup', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(fieldPaths(r), JSON.stringify(body)).toContain(field);
    }
    expect((await api('POST', '/api/v1/cleanup', 'older_than_days: 1\n', 'application/yaml')).status).toBe(415);
  });
});
