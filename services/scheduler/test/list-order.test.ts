// Lists page newest first with LIMIT/OFFSET: an index in that order lets a page read its own rows.
// Without one each page of schedules or workers read and sorted every row, and count(*) OVER ()
// (the total beside the page) made each page of schedules or of a schedule's runs read them all.
import { createTestEnv, pagedPlans, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startScheduler } from '../src/service.js';

let env: TestEnv;
let svc: RunningService;
let scheduleId: string;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startScheduler(env.config('scheduler'));
  const db = svc.ctx.db;
  // disabled, so the firer leaves them alone
  await db.query(
    `INSERT INTO schedules (id, job_id, cron, enabled, created_at) SELECT gen_random_uuid(), gen_random_uuid(), '0 0 * * *', false, now() - g * interval '1 s'
     FROM generate_series(1, 20000) g`,
  );
  scheduleId = (await db.query<{ id: string }>('SELECT id FROM schedules LIMIT 1')).rows[0]!.id;
  await db.query(
    `INSERT INTO schedule_runs (id, schedule_id, scheduled_at, outcome) SELECT gen_random_uuid(), $1, now() - g * interval '1 min', 'fired' FROM generate_series(1, 20000) g`,
    [scheduleId],
  );
  await db.query(
    `INSERT INTO workers (id, type, status, slots, cpu_cores, memory_bytes, registered_at, last_heartbeat_at)
     SELECT gen_random_uuid(), 'shell', 'stopped', 1, 1, 1000, now() - g * interval '1 s', now() FROM generate_series(1, 20000) g`,
  );
  await db.query('ANALYZE');
}, 30_000);

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

/** What each page's plan must not hold: a sort, or a window count, of every row. */
const WHOLE = ['Sort', 'WindowAgg', 'Seq Scan on schedules', 'Seq Scan on workers'];
const LISTED = /\b(schedules|schedule_runs|workers)\b/;

it.each([
  ['/api/v1/schedules?limit=20', WHOLE],
  ['/api/v1/schedules?limit=20&offset=100', WHOLE],
  ['/api/v1/scheduled?limit=20', WHOLE],
  // a pipeline's few schedules, found by index, may be sorted
  ['/api/v1/schedules?limit=20&pipeline_id=0190d6b0-0000-7000-8000-000000000000', ['WindowAgg', 'Seq Scan on schedules']],
  ['/api/v1/schedules/:id/runs?limit=20', WHOLE],
  ['/api/v1/schedules/:id/runs?limit=20&offset=100', WHOLE],
  ['/api/v1/workers?limit=20', WHOLE],
  ['/api/v1/workers?limit=20&offset=100', WHOLE],
])('%s reads its page by index, with no sort nor count of every row', async (path, forbidden) => {
  const url = `${svc.url}${path.replace(':id', scheduleId)}`;
  // the placer's own tick (it pages the waiting queue) may land in the same moment: only the
  // statements reading what the page lists are the request's
  const plans = (await pagedPlans(svc.ctx.db, async () => expect((await fetch(url)).status).toBe(200))).filter((p) => LISTED.test(p.sql));
  expect(plans.length).toBeGreaterThan(0);
  for (const p of plans) {
    for (const node of forbidden) expect(p.nodes, p.sql).not.toContain(node);
    // a worker's usage is summed for the page's workers, not for those an offset skips
    expect(p.loops.queue ?? 0, p.sql).toBeLessThanOrEqual(20);
  }
});
