// Cron lateness (issue 4): a `*/1 * * * * *` schedule fires at least 60 times; lateness is each
// firing's fired_at − scheduled_at as recorded in GET /api/v1/schedules/:id/runs.
// Targets: p50 ≤ 10 ms, p99 ≤ 50 ms.
//
//   tsx cron-lateness.ts [--firings 60] [--json]
import { parseArgs } from 'node:util';
import { call, quantile, startStack, until } from './failure-stack.js';

const { values } = parseArgs({ options: { firings: { type: 'string', default: '60' }, json: { type: 'boolean', default: false } } });
const want = Number(values.firings);

const stack = await startStack();
try {
  await stack.startWorker({ pool: 'cron' }, 4);
  const job = await call(stack.orchestrator, 'POST', '/api/v1/jobs', { name: 'tick', command: 'true', labels: { pool: 'cron' } });
  if (job.status !== 201) throw new Error(`POST /api/v1/jobs: ${job.status} ${JSON.stringify(job.body)}`);
  const s = await call(stack.scheduler, 'POST', '/api/v1/schedules', { job_id: job.body.id, cron: '*/1 * * * * *', overlap_policy: 'allow' });
  if (s.status !== 201) throw new Error(`POST /api/v1/schedules: ${s.status} ${JSON.stringify(s.body)}`);
  process.stderr.write(`schedule ${s.body.id}: waiting for ${want} firings (~${want + 2} s)\n`);
  type Run = { scheduled_at: string; fired_at: string | null; outcome: string };
  // the first firing may land in the second the schedule was created: leave it out
  const runs = await until(
    async () => {
      const r = await call(stack.scheduler, 'GET', `/api/v1/schedules/${s.body.id}/runs?limit=1000`);
      const fired = (r.body as Run[]).filter((x) => x.fired_at);
      return fired.length >= want + 1 && fired;
    },
    (want + 30) * 1000,
    `${want} firings`,
    500,
  );
  await call(stack.scheduler, 'PATCH', `/api/v1/schedules/${s.body.id}`, { enabled: false });
  const sorted = runs.sort((a, b) => Date.parse(a.scheduled_at) - Date.parse(b.scheduled_at)).slice(1);
  const lateness = sorted.map((x) => Date.parse(x.fired_at!) - Date.parse(x.scheduled_at));
  const seconds = new Set(sorted.map((x) => x.scheduled_at));
  const out = {
    firings: sorted.length,
    distinct_seconds: seconds.size,
    outcomes: Object.fromEntries([...new Set(sorted.map((x) => x.outcome))].map((o) => [o, sorted.filter((x) => x.outcome === o).length])),
    p50_ms: quantile(lateness, 0.5),
    p99_ms: quantile(lateness, 0.99),
    max_ms: Math.max(...lateness),
    targets: { p50_ms: 10, p99_ms: 50 },
  };
  if (values.json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    process.stdout.write(
      `cron lateness over ${out.firings} firings (${out.distinct_seconds} distinct seconds, outcomes ${JSON.stringify(out.outcomes)})\n` +
        `  p50 ${out.p50_ms} ms (target ≤ 10)   p99 ${out.p99_ms} ms (target ≤ 50)   max ${out.max_ms} ms\n`,
    );
  }
} finally {
  await stack.close();
}
