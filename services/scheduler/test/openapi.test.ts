// Real responses against the OpenAPI documents the scheduler and the orchestrator serve: each
// status, content type and JSON field of a representative set of requests must be in them.
import { conformingFetch, createTestEnv, newId, type OpenApiDocument, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startScheduler } from '../src/service.js';

let env: TestEnv;
let orchestrator: RunningService;
let scheduler: RunningService;
const problems: string[] = [];
const docs = new Map<string, OpenApiDocument>();

async function call(svc: RunningService, method: string, path: string, body?: unknown) {
  if (!docs.has(svc.url)) docs.set(svc.url, (await (await fetch(`${svc.url}/openapi.json`)).json()) as OpenApiDocument);
  const r = await conformingFetch(docs.get(svc.url)!, svc.url, method, path, body);
  problems.push(...r.problems);
  return r;
}

beforeAll(async () => {
  env = createTestEnv();
  orchestrator = await startOrchestrator(env.config('orchestrator'));
  const base = env.config('scheduler');
  // no worker-manager: a firing fails to start rather than reach one on the default port
  scheduler = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: orchestrator.url, 'worker-manager': 'http://127.0.0.1:1' } });
});
afterAll(async () => {
  await scheduler?.stop();
  await orchestrator?.stop();
  await env?.cleanup();
});

describe('responses match the OpenAPI documents', () => {
  it('orchestrator: jobs, pipelines, stats and their errors', async () => {
    problems.length = 0;
    const o = orchestrator;
    const job = await call(o, 'POST', '/api/v1/jobs', { name: 'doc', command: 'echo hi', tags: ['t'], labels: { pool: 'a' }, max_retries: 1 });
    expect(job.status).toBe(201);
    expect((await call(o, 'GET', `/api/v1/jobs/${job.body.id}`)).status).toBe(200);
    expect((await call(o, 'GET', '/api/v1/jobs?limit=2&tag=t')).status).toBe(200);
    expect((await call(o, 'PATCH', `/api/v1/jobs/${job.body.id}`, { description: 'd' })).status).toBe(200);
    const pipeline = await call(o, 'POST', '/api/v1/pipelines', { name: 'p', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] });
    expect(pipeline.status).toBe(201);
    expect((await call(o, 'GET', `/api/v1/pipelines/${pipeline.body.id}`)).status).toBe(200);
    expect((await call(o, 'GET', '/api/v1/pipelines')).status).toBe(200);
    expect((await call(o, 'GET', `/api/v1/pipelines/${pipeline.body.id}/runs`)).status).toBe(200);
    expect((await call(o, 'GET', '/api/v1/stats')).status).toBe(200);
    expect((await call(o, 'POST', '/api/v1/jobs', { name: 'x', command: 'y', bogus: 1 })).status).toBe(400);
    expect((await call(o, 'GET', `/api/v1/jobs/${newId()}`)).status).toBe(404);
    expect((await call(o, 'GET', '/api/v1/jobs?status=bogus')).status).toBe(400);
    expect((await call(o, 'DELETE', `/api/v1/jobs/${job.body.id}`)).status).toBe(204);
    expect(problems).toEqual([]);
  });

  it('scheduler: schedules, workers and their errors', async () => {
    problems.length = 0;
    const s = scheduler;
    const jobId = (await call(orchestrator, 'POST', '/api/v1/jobs', { name: 'nightly', command: 'true' })).body.id as string;
    const schedule = await call(s, 'POST', '/api/v1/schedules', { name: 'n', job_id: jobId, cron: '0 3 * * *', timezone: 'Europe/Madrid' });
    expect(schedule.status).toBe(201);
    const id = schedule.body.id as string;
    expect((await call(s, 'GET', `/api/v1/schedules/${id}`)).status).toBe(200);
    expect((await call(s, 'GET', '/api/v1/schedules')).status).toBe(200);
    expect((await call(s, 'GET', '/api/v1/scheduled')).status).toBe(200);
    expect((await call(s, 'PATCH', `/api/v1/schedules/${id}`, { enabled: false })).status).toBe(200);
    expect((await call(s, 'POST', `/api/v1/schedules/${id}/run`)).status).toBe(202);
    expect((await call(s, 'GET', `/api/v1/schedules/${id}/runs`)).status).toBe(200);
    expect((await call(s, 'POST', '/api/v1/schedule', { job_id: jobId, run_at: new Date(Date.now() + 3_600_000).toISOString() })).status).toBe(201);
    expect((await call(s, 'POST', '/api/v1/schedules', { job_id: jobId, cron: 'nope' })).status).toBe(400);
    const worker = { id: newId(), type: 'shell', name: 'w', labels: {}, capacity: { slots: 2, cpu_cores: 1, memory_bytes: 1 << 30 } };
    expect((await call(s, 'POST', '/api/v1/workers', worker)).status).toBe(201);
    expect((await call(s, 'POST', '/api/v1/workers', worker)).status).toBe(200);
    expect((await call(s, 'POST', `/api/v1/workers/${worker.id}/heartbeat`, { status: 'online', running_executions: [] })).status).toBe(200);
    expect((await call(s, 'GET', `/api/v1/workers/${worker.id}`)).status).toBe(200);
    expect((await call(s, 'GET', '/api/v1/workers')).status).toBe(200);
    expect((await call(s, 'DELETE', `/api/v1/workers/${worker.id}`)).status).toBe(200);
    expect((await call(s, 'GET', `/api/v1/schedules/${newId()}`)).status).toBe(404);
    expect((await call(s, 'DELETE', `/api/v1/schedules/${id}`)).status).toBe(204);
    expect(problems).toEqual([]);
  });
});

describe('request bodies in the OpenAPI documents', () => {
  it('are required only where a request without one is refused', async () => {
    type Doc = { paths: Record<string, Record<string, { requestBody?: { required?: boolean } }>> };
    const required = async (svc: RunningService, method: string, path: string) =>
      ((await (await fetch(`${svc.url}/openapi.json`)).json()) as Doc).paths[path]![method]!.requestBody!.required ?? false;
    const worker = { id: newId(), type: 'shell', capacity: { slots: 1, cpu_cores: 1, memory_bytes: 1 << 30 } };
    expect((await call(scheduler, 'POST', '/api/v1/workers', worker)).status).toBe(201);
    expect((await fetch(`${scheduler.url}/api/v1/workers/${worker.id}/heartbeat`, { method: 'POST' })).status).toBe(200);
    expect(await required(scheduler, 'post', '/api/v1/workers/{id}/heartbeat')).toBe(false);
    expect((await fetch(`${scheduler.url}/api/v1/schedules`, { method: 'POST' })).status).toBe(400);
    expect(await required(scheduler, 'post', '/api/v1/schedules')).toBe(true);
    expect(await required(orchestrator, 'post', '/api/v1/pipelines/{id}/runs')).toBe(false); // {env} is optional
    expect((await fetch(`${orchestrator.url}/api/v1/pipelines`, { method: 'POST' })).status).toBe(400);
    expect(await required(orchestrator, 'post', '/api/v1/pipelines')).toBe(true);
  });
});

describe('the documents of the event streams', () => {
  it("name the Last-Event-ID header the orchestrator's pipeline-run streams resume from", async () => {
    const doc = (await (await fetch(`${orchestrator.url}/openapi.json`)).json()) as { paths: Record<string, { get: { parameters?: { name: string; in: string }[] } }> };
    for (const path of ['/api/v1/pipeline-runs/events/stream', '/api/v1/pipeline-runs/{id}/events/stream']) {
      expect((doc.paths[path]!.get.parameters ?? []).map((p) => `${p.in} ${p.name}`), path).toContain('header Last-Event-ID');
    }
  });
});
