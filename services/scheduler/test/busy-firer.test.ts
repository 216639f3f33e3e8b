// A firing that waits for the slow start of another schedule's firing (worker-manager slow to answer
// execute) while the scheduler runs is late, not missed: misfire_policy skip is for downtime.
import { createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ScheduleRun } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fakeWorkerManager, type FakeWorkerManager } from '../../orchestrator/test/helpers.js';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

const SLOW_EXECUTE_MS = 2500;
const slowJob = newId();
const quickJob = newId();

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

it('a schedule with misfire_policy skip fires late, not skipped as missed, while another firing is slow to start', async () => {
  const slow = await create({ job_id: slowJob, cron: '* * * * * *', overlap_policy: 'allow' });
  const quick = await create({ job_id: quickJob, cron: '* * * * * *', overlap_policy: 'allow', misfire_policy: 'skip' });
  await until(() => runs(slow), (r) => r.filter((x) => x.outcome === 'fired').length >= 3, 20_000);
  for (const id of [slow, quick]) await fetch(`${svc.url}/api/v1/schedules/${id}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enabled: false }) });
  const quickRuns = await runs(quick);
  expect(quickRuns.filter((x) => x.outcome === 'skipped')).toEqual([]);
  // it fired once for each pass the slow start held up, the later ones more than a second late
  const fired = quickRuns.filter((x) => x.outcome === 'fired');
  expect(fired.length).toBeGreaterThanOrEqual(3);
  expect(fired.some((x) => Date.parse(x.fired_at!) - Date.parse(x.scheduled_at) > 1000)).toBe(true);
}, 40_000);
