// The orchestrator with the real worker-manager, scheduler and a worker process: pipeline runs,
// job status and cancel end to end (stats and cleanup: stats.test.ts).
import { setTimeout } from 'node:timers/promises';
import pg from 'pg';
import type { RunningService } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, eventually, runEnded } from './helpers.js';
import { startRealStack, stopRealStack, type RealStack } from './real-stack.js';

let stack: RealStack | undefined;
let orchestrator: RunningService;
let workerManager: RunningService;
const api = (method: string, path: string, body?: unknown) => call(orchestrator.url, method, path, body);

beforeAll(async () => {
  stack = await startRealStack('orchestrator-test');
  ({ orchestrator, workerManager } = stack);
}, 60_000);

afterAll(async () => {
  if (stack) await stopRealStack(stack);
});

const job = async (jobId: string) => (await api('GET', `/api/v1/jobs/${jobId}`)).body;

describe('with the real services', () => {
  it('runs a pipeline in dependency order on a worker; a failure skips the rest', async () => {
    const p = await api('POST', '/api/v1/pipelines', {
      name: 'real',
      jobs: [
        { name: 'first', command: 'echo first' },
        { name: 'second', command: 'echo second; exit 3', depends_on: ['first'] },
        { name: 'third', command: 'echo third', depends_on: ['second'] },
        { name: 'side', command: 'echo side', depends_on: ['first'] },
      ],
    });
    expect(p.status).toBe(201);
    const ids = Object.fromEntries(p.body.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    const r = await api('POST', `/api/v1/pipelines/${p.body.id}/runs`);
    expect(r.status).toBe(202);
    const run = await runEnded(orchestrator.url, r.body.id, 20_000);
    const byName = Object.fromEntries(run.jobs.map((j: { name: string }) => [j.name, j]));
    expect(run.status).toBe('failed');
    expect(byName.first.status).toBe('completed');
    expect(byName.side.status).toBe('completed');
    expect(byName.second.status).toBe('failed');
    expect(byName.third).toMatchObject({ status: 'skipped', execution_id: null });

    const second = await eventually(async () => {
      const j = await job(ids.second);
      return j.last_execution?.exit_code === 3 ? j : undefined;
    });
    expect(second.status).toBe('failed');
    expect(second.last_execution.duration_ms).toBeGreaterThanOrEqual(0);
    expect((await job(ids.third)).status).toBe('pending');
    const logs = await call(workerManager.url, 'GET', `/api/v1/executions/${byName.second.execution_id}/logs`);
    expect(logs.body.lines.map((l: { line: string }) => l.line)).toEqual(['second']);
  }, 30_000);

  it('cancels a running job through worker-manager', async () => {
    const j = (await api('POST', '/api/v1/jobs', { name: 'sleeper', command: 'sleep 30' })).body;
    const e = await call(workerManager.url, 'POST', '/api/v1/execute', { job_id: j.id });
    expect(e.status).toBe(202);
    await eventually(async () => ((await job(j.id)).status === 'running' ? true : undefined), 15_000);
    const c = await api('POST', `/api/v1/jobs/${j.id}/cancel`);
    expect(c.status).toBe(202);
    expect(c.body.cancelled).toEqual({ executions: 1, queued: 0, running: 1 });
    const done = await eventually(async () => {
      const x = await job(j.id);
      return x.status === 'cancelled' ? x : undefined;
    }, 15_000);
    expect(done.last_execution.id).toBe(e.body.id);
  }, 30_000);

  it('cancels every queued execution of a job, more than worker-manager lists in one page (1,000)', async () => {
    const j = (await api('POST', '/api/v1/jobs', { name: 'backlog', command: 'echo never', labels: { pool: 'nowhere' } })).body;
    const count = async (status: string) =>
      Number((await call(workerManager.url, 'GET', `/api/v1/executions?job_id=${j.id}&status=${status}&limit=1`)).headers.get('x-total-count'));
    const total = 1010;
    let submitted = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (submitted < total) {
          submitted += 1;
          expect((await call(workerManager.url, 'POST', '/api/v1/execute', { job_id: j.id })).status).toBe(202);
        }
      }),
    );
    expect(await count('queued')).toBe(total);

    // meanwhile the orchestrator applies the job's 1,010 execution events: one at a time per job,
    // not side by side, each waiting for the job's row lock with a connection of the pool held
    const db = new pg.Client({ connectionString: stack!.env.databaseUrl });
    await db.connect();
    let lockWaits = 0;
    let cancelled = false;
    const sampling = (async () => {
      while (!cancelled) {
        const { rows } = await db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'hodei-orchestrator' AND wait_event_type = 'Lock'",
        );
        lockWaits = Math.max(lockWaits, rows[0].n);
        await setTimeout(20);
      }
    })();
    const c = await api('POST', `/api/v1/jobs/${j.id}/cancel`);
    await eventually(async () => ((await job(j.id)).status === 'cancelled' ? true : undefined), 30_000);
    cancelled = true;
    await sampling;
    await db.end();
    // three consumers (queued, status, finished) may each hold one event of the job
    expect(lockWaits).toBeLessThanOrEqual(2);
    expect(c.status).toBe(202);
    expect(c.body.cancelled).toEqual({ executions: total, queued: total, running: 0 });
    expect(await count('queued')).toBe(0);
    expect(await count('cancelled')).toBe(total);
    expect((await api('POST', `/api/v1/jobs/${j.id}/cancel`)).status).toBe(409);
  }, 120_000);
});
