// The 405 of the shared app, on a route of each of the three services.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startScheduler } from '../../../services/scheduler/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';
import { createTestEnv, type RunningService } from '../src/index.js';

const env = createTestEnv();
const ID = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';
let services: RunningService[] = [];

beforeAll(async () => {
  services = [
    await startOrchestrator(env.config('orchestrator')),
    await startScheduler(env.config('scheduler')),
    await startWorkerManager(env.config('worker-manager')),
  ];
});
afterAll(async () => {
  for (const s of services) await s.stop();
  await env.cleanup();
});

it.each([
  [0, 'PUT', `/api/v1/jobs/${ID}`, 'DELETE, GET, HEAD, PATCH'],
  [0, 'DELETE', '/api/v1/jobs', 'GET, HEAD, POST'],
  [1, 'PUT', `/api/v1/schedules/${ID}`, 'DELETE, GET, HEAD, PATCH'],
  [1, 'PATCH', `/api/v1/workers/${ID}`, 'DELETE, GET, HEAD'],
  [2, 'DELETE', '/api/v1/executions', 'GET, HEAD'],
  [2, 'GET', `/api/v1/executions/${ID}/cancel`, 'POST'],
])('service %i: %s %s is a 405 with Allow: %s', async (i, method, path, allow) => {
  const res = await fetch(`${services[i]!.url}${path}`, { method });
  expect(res.status).toBe(405);
  expect(res.headers.get('allow')).toBe(allow);
  expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
  expect((await res.json()).detail).toBe(`${method} is not allowed on ${path}; allowed: ${allow}`);
});
