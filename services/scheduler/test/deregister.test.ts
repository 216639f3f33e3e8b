// DELETE /api/v1/workers/:id on the scheduler with a live agent behind it: the agent drains and
// exits instead of idling on, heartbeating, never given work again.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestEnv, newId, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import { startScheduler } from '../src/service.js';
import { startAgentProcess, type AgentProcess } from '../../../packages/worker/test/harness.js';

let env: TestEnv;
let sched: RunningService;
let agent: AgentProcess | undefined;

beforeAll(async () => {
  env = createTestEnv();
  sched = await startScheduler(env.config('scheduler', { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 5000 }));
});

afterAll(async () => {
  agent?.proc.kill('SIGKILL');
  await sched?.stop();
  await env?.cleanup();
});

it('a deregistered agent drains and exits 0; the registry keeps it stopped', async () => {
  const id = newId();
  agent = startAgentProcess(env.natsPrefix, id, { HODEI_SCHEDULER_URL: sched.url, HODEI_HEARTBEAT_INTERVAL_MS: '200' });
  await workerOnline(sched.url, id, 20_000);
  const res = await fetch(`${sched.url}/api/v1/workers/${id}`, { method: 'DELETE' });
  expect(res.status).toBe(200);
  expect((await res.json()).status).toBe('stopped');
  const exit = await Promise.race([agent.exit, new Promise<'running'>((r) => setTimeout(() => r('running'), 15_000))]);
  expect(exit).toBe(0);
  expect(agent.stdout()).toContain('draining');
  const view = await (await fetch(`${sched.url}/api/v1/workers/${id}`)).json();
  expect(view.status).toBe('stopped');
}, 40_000);
