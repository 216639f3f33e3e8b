// Job and pipeline existence checked against the real orchestrator.
import { createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startScheduler } from '../src/service.js';

let env: TestEnv;
let orchestrator: RunningService;
let scheduler: RunningService;

const post = (base: string, path: string, body: unknown) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

beforeAll(async () => {
  env = createTestEnv();
  orchestrator = await startOrchestrator(env.config('orchestrator'));
  const base = env.config('scheduler');
  scheduler = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: orchestrator.url } });
});

afterAll(async () => {
  await scheduler?.stop();
  await orchestrator?.stop();
  await env?.cleanup();
});

it('schedules an existing job or pipeline and refuses unknown ones naming the field', async () => {
  const job = await (await post(orchestrator.url, '/api/v1/jobs', { name: 'nightly', command: 'echo hi' })).json();
  const pipeline = await (await post(orchestrator.url, '/api/v1/pipelines', { name: 'etl' })).json();
  const ok = await post(scheduler.url, '/api/v1/schedule', { job_id: job.id, cron: '0 3 * * *' });
  expect(ok.status).toBe(201);
  expect(await ok.json()).toMatchObject({ job_id: job.id, status: 'scheduled', next_run_at: expect.stringMatching(/T03:00:00\.000Z$/) });
  expect((await post(scheduler.url, '/api/v1/schedules', { pipeline_id: pipeline.id, run_at: new Date(Date.now() + 60_000).toISOString() })).status).toBe(201);

  const unknown = newId();
  const bad = await post(scheduler.url, '/api/v1/schedule', { job_id: unknown, cron: '0 3 * * *' });
  expect(bad.status).toBe(404);
  expect((await bad.json()).errors).toEqual([{ path: 'job_id', message: `job ${unknown} not found` }]);
  const badPipeline = await post(scheduler.url, '/api/v1/schedules', { pipeline_id: unknown, cron: '0 3 * * *' });
  expect(badPipeline.status).toBe(404);
  expect((await badPipeline.json()).errors[0].path).toBe('pipeline_id');
});
