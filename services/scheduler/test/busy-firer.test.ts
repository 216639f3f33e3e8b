// A firing slow to start (worker-manager slow to answer execute, or answering 503 so that it is asked
// again for up to 30 s) holds up no other schedule: they fire on time. The slow schedule's own next
// firing waits for that start, and is late, not missed: misfire_policy skip is for downtime.
import { createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ScheduleRun } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fakeWorkerManager, type FakeWorkerManager } from '../../orchestrator/test/helpers.js';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

const SLOW_EXECUTE_MS = 2500;
/** execute answers 503 this many times for that job before it takes a firing (one try a second). */
const REFUSALS = 4;
const slowJob = newId();
const refusedJob = newId();
const quickJob = newId();
let refused = 0;
/** Jobs of the burst test: their executes are counted while under way. */
const burstJobs = new Set<string>();
let burstInFlight = 0;
let burstMaxInFlight = 0;

let env: TestEnv;
let svc: RunningService;
let standIn: FakeWorkerManager;

beforeAll(async () => {
  env = createTestEnv();
  // one stand-in for the orchestrator (the jobs exist) and worker-manager (execute)
  standIn = await fakeWorkerManager(async (req) => {
    if (req.method === 'GET' && req.path.startsWith('/api/v1/jobs/')) return { status: 200, body: { id: req.path.split('/').at(-1) } };
    if (req.method === 'POST' && req.path === '/api/v1/execute') {
      const jobId = (req.body as { job_id: string }).job_id;
      if (jobId === slowJob) await new Promise((r) => setTimeout(r, SLOW_EXECUTE_MS));
      if (burstJobs.has(jobId)) {
        burstInFlight += 1;
        burstMaxInFlight = Math.max(burstMaxInFlight, burstInFlight);
        await new Promise((r) => setTimeout(r, 200)); // a worker-manager busy with the others
        burstInFlight -= 1;
      }
      if (jobId === refusedJob && refused < REFUSALS) {
        refused += 1;
        return { status: 503, body: { title: 'Service Unavailable', detail: 'the database is unavailable; try again' } };
      }
      return { status: 202, body: { id: newId(), job_id: jobId, status: 'queued', created_at: new Date().toISOString() } };
    }
    return undefined;
  });
  const base = env.config('scheduler');
  svc = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: standIn.url, 'worker-manager': standIn.url } });
});

afterAll(async () => {
  await svc?.stop();
  await standIn?.close();
  await env?.cleanup();
});

const create = async (body: unknown): Promise<string> => {
  const res = await fetch(`${svc.url}/api/v1/schedules`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
};
const runs = async (id: string): Promise<ScheduleRun[]> => (await fetch(`${svc.url}/api/v1/schedules/${id}/runs`)).json();
const lateMs = (r: ScheduleRun) => Date.parse(r.fired_at!) - Date.parse(r.scheduled_at);

it('other schedules fire on time while one firing is slow to start or asked again; the slow ones fire late, not skipped as missed', async () => {
  const every = { cron: '* * * * * *', overlap_policy: 'allow', misfire_policy: 'skip' };
  const slow = await create({ job_id: slowJob, ...every });
  const retried = await create({ job_id: refusedJob, ...every });
  const quick = await create({ job_id: quickJob, ...every });
  await until(() => runs(slow), (r) => r.filter((x) => x.outcome === 'fired').length >= 3, 20_000);
  await until(() => runs(retried), (r) => r.filter((x) => x.outcome === 'fired').length >= 2, 20_000);
  for (const id of [slow, retried, quick]) await fetch(`${svc.url}/api/v1/schedules/${id}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enabled: false }) });
  const [slowRuns, retriedRuns, quickRuns] = await Promise.all([runs(slow), runs(retried), runs(quick)]);

  // the quick schedule fired every second, each on time, none held up by the others' starts
  const quickFired = quickRuns.filter((x) => x.outcome === 'fired');
  expect(quickRuns.filter((x) => x.outcome === 'skipped')).toEqual([]);
  expect(quickFired.length).toBeGreaterThanOrEqual(REFUSALS + 1);
  expect(quickFired.filter((x) => lateMs(x) > 1000).map((x) => ({ scheduled_at: x.scheduled_at, late_ms: lateMs(x) }))).toEqual([]);

  // the first retried firing started after the refusals; the next waited for it and fired late, once
  const retriedInOrder = retriedRuns.filter((x) => x.outcome !== 'pending').reverse();
  expect(retriedInOrder.filter((x) => x.outcome === 'skipped')).toEqual([]);
  expect(refused).toBe(REFUSALS);
  expect(lateMs(retriedInOrder[1]!)).toBeGreaterThan(REFUSALS * 1000 - 1000);

  // the slow schedule's firings waited for its own start: late, never skipped as missed
  expect(slowRuns.filter((x) => x.outcome === 'skipped')).toEqual([]);
  expect(slowRuns.some((x) => x.outcome === 'fired' && lateMs(x) > 1000)).toBe(true);
}, 40_000);

it('many schedules due the same second are started a few at a time, each fired once', async () => {
  const n = 40;
  for (let i = 0; i < n; i++) burstJobs.add(newId());
  const runAt = new Date(Math.ceil((Date.now() + 2000) / 1000) * 1000).toISOString();
  const ids = await Promise.all([...burstJobs].map((job_id) => create({ job_id, run_at: runAt })));
  const all = await until(
    () => Promise.all(ids.map(runs)),
    (rs) => rs.every((r) => r.some((x) => x.outcome !== 'pending')),
    20_000,
  );
  expect(all.map((r) => r.map((x) => `${x.scheduled_at} ${x.outcome}`))).toEqual(ids.map(() => [`${runAt} fired`]));
  // all at once, worker-manager would have had every one of them to answer at the same time
  expect(burstMaxInFlight).toBeGreaterThan(1);
  expect(burstMaxInFlight).toBeLessThanOrEqual(8);
}, 30_000);
