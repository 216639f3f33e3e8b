// A start claimed by an orchestrator that stopped before recording the execution: the sweep takes
// it over, adopting the execution worker-manager already has for that run, or starting the job
// when it has none, so the job runs exactly once. A contract test against a stand-in
// worker-manager (helpers.ts): a real one cannot be stopped between claiming and recording.
import { createLogger, createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineRunner } from '../src/runs.js';
import { startOrchestrator } from '../src/service.js';
import { WorkerManagerClient } from '../src/worker-manager.js';
import { call, eventually, fakeWorkerManager, withWorkerManager, type FakeWorkerManager } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let wm: FakeWorkerManager;
/** executions worker-manager "has", by job id */
const existing = new Map<string, Array<{ id: string; spec: { env: Record<string, string> } }>>();
const executed: Array<{ job_id: string; env: Record<string, string> }> = [];

beforeAll(async () => {
  env = createTestEnv();
  wm = await fakeWorkerManager((req) => {
    if (req.method === 'POST' && req.path === '/api/v1/execute') {
      const body = req.body as { job_id: string; env: Record<string, string> };
      executed.push(body);
      return { status: 202, body: { id: newId(), job_id: body.job_id, status: 'queued', created_at: new Date().toISOString() } };
    }
    if (req.method === 'GET' && req.path === '/api/v1/executions') return { status: 200, body: existing.get(req.query.get('job_id') ?? '') ?? [] };
    return undefined;
  });
  const base = env.config('orchestrator');
  svc = await startOrchestrator(withWorkerManager(base, wm.url));
});
afterAll(async () => {
  await svc?.stop();
  await wm?.close();
  await env?.cleanup();
});

const api = (method: string, path: string, body?: unknown) => call(svc.url, method, path, body);

/** A run whose jobs `a` and `b` were both claimed an hour ago and never recorded an execution. */
async function abandonedRun(): Promise<{ runId: string; ids: Record<string, string> }> {
  const p = await api('POST', '/api/v1/pipelines', { name: `abandoned-${newId().slice(-6)}`, jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true' }] });
  const ids = Object.fromEntries(p.body.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
  const runId = newId();
  await svc.ctx.db.query('INSERT INTO pipeline_runs (id, pipeline_id) VALUES ($1, $2)', [runId, p.body.id]);
  for (const [position, name] of ['a', 'b'].entries())
    await svc.ctx.db.query(
      `INSERT INTO pipeline_run_jobs (run_id, position, job_id, name, status, starting_at) VALUES ($1, $2, $3, $4, 'starting', now() - interval '1 hour')`,
      [runId, position, ids[name], name],
    );
  return { runId, ids };
}

describe('stale starts taken over (contract, stand-in worker-manager)', () => {
  it('adopts the execution worker-manager already has for the run, starts only the job it does not have', async () => {
    const { runId, ids } = await abandonedRun();
    const adopted = newId();
    existing.set(ids.a!, [
      { id: newId(), spec: { env: { HODEI_PIPELINE_RUN_ID: newId() } } }, // another run's
      { id: adopted, spec: { env: { HODEI_PIPELINE_RUN_ID: runId } } },
    ]);
    const run = await eventually(async () => {
      const r = (await api('GET', `/api/v1/pipeline-runs/${runId}`)).body;
      return r.jobs.every((j: { execution_id: string | null }) => j.execution_id) ? r : undefined;
    }, 20_000);
    const byName = Object.fromEntries(run.jobs.map((j: { name: string }) => [j.name, j]));
    expect(byName.a).toMatchObject({ status: 'queued', execution_id: adopted });
    expect(byName.b.status).toBe('queued');
    expect(executed.map((e) => e.job_id)).toEqual([ids.b]);
    expect(executed[0]!.env.HODEI_PIPELINE_RUN_ID).toBe(runId);
  }, 30_000);

  it('starts a fan-out slower than the stale-claim limit keep their claims: the sweep starts none of them again', async () => {
    const started = new Map<string, number>();
    const slow = await fakeWorkerManager(async (req) => {
      if (req.method === 'POST' && req.path === '/api/v1/execute') {
        const body = req.body as { job_id: string };
        started.set(body.job_id, (started.get(body.job_id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 400));
        return { status: 202, body: { id: newId(), job_id: body.job_id, status: 'queued', created_at: new Date().toISOString() } };
      }
      if (req.method === 'GET' && req.path === '/api/v1/executions') return { status: 200, body: [] };
      return undefined;
    });
    const logger = createLogger('orchestrator', 'silent');
    // claims go stale after 1 s, and the sweep looks every 100 ms; 48 starts, 16 at a time, 400 ms each: 1.2 s
    const runner = new PipelineRunner(svc.ctx.db, new WorkerManagerClient(slow.url, undefined, logger), svc.ctx.bus, logger, { staleStartMs: 1000, sweepMs: 100 });
    await runner.start();
    try {
      const p = await api('POST', '/api/v1/pipelines', { name: 'slow-fan-out', jobs: Array.from({ length: 48 }, (_, i) => ({ name: `s${i}`, command: 'true' })) });
      const run = await runner.create(p.body.id);
      await eventually(async () => {
        const r = (await api('GET', `/api/v1/pipeline-runs/${run.id}`)).body;
        return r.jobs.every((j: { status: string }) => j.status === 'queued') ? true : undefined;
      }, 10_000);
      await runner.stop(); // a sweep still taking a claim over finishes first
      expect(started.size).toBe(48);
      expect([...started.values()].filter((n) => n > 1)).toEqual([]);
    } finally {
      await runner.stop();
      await slow.close();
    }
  }, 30_000);
});
