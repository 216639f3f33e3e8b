// Lists page newest first (ORDER BY created_at DESC, id DESC with LIMIT/OFFSET): an index in that
// order lets a page read its own rows; without one, each page read and sorted every job (100,000
// jobs: 75 ms a page, the sort spilling to disk) and looked up every job's last execution first;
// an offset page still looked up the last execution of every job it skipped.
import { createTestEnv, pagedPlans, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';

let env: TestEnv;
let svc: RunningService;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startOrchestrator(env.config('orchestrator'));
  const db = svc.ctx.db;
  await db.query(`INSERT INTO pipelines (id, name, created_at) SELECT gen_random_uuid(), 'p' || g, now() - g * interval '1 s' FROM generate_series(1, 5000) g`);
  await db.query(
    `INSERT INTO jobs (id, name, command, status, created_at) SELECT gen_random_uuid(), 'j' || g, 'true', 'completed', now() - g * interval '1 s' FROM generate_series(1, 20000) g`,
  );
  await db.query(`INSERT INTO job_executions (execution_id, job_id, status) SELECT gen_random_uuid(), id, 'completed' FROM jobs`);
  await db.query('ANALYZE');
}, 30_000);

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

it.each(['/api/v1/jobs?limit=20', '/api/v1/jobs?limit=20&offset=100', '/api/v1/pipelines?limit=20', '/api/v1/pipelines?limit=20&offset=100'])(
  '%s reads its page by index: no sort of every row, no lookup for the rows an offset skips',
  async (path) => {
    const plans = await pagedPlans(svc.ctx.db, async () => expect((await fetch(`${svc.url}${path}`)).status).toBe(200));
    expect(plans.length).toBeGreaterThan(0);
    for (const p of plans) {
      expect(p.nodes, p.sql).not.toContain('Sort');
      expect(p.loops.job_executions ?? 0, p.sql).toBeLessThanOrEqual(20);
    }
  },
);
