// DELETE /api/v1/workers/:id on the scheduler with a live agent behind it: the agent drains and
// exits instead of idling on, heartbeating, never given work again.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectBus, createLogger, createTestEnv, decodeJson, encodeJson, newId, workerOnline, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import type { Assignment, AssignmentAck, ExecutionStatusEvent } from '@hodei/types';
import { startScheduler } from '../src/service.js';
import { spec, startAgentProcess, waitFor, type AgentProcess } from '../../../packages/worker/test/harness.js';

let env: TestEnv;
let sched: RunningService;
let bus: Bus;
let scratch: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  env = createTestEnv();
  scratch = mkdtempSync(join(tmpdir(), 'hodei-deregister-'));
  sched = await startScheduler(env.config('scheduler', { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 5000 }));
  bus = await connectBus(env.config('scheduler').natsUrl, env.natsPrefix, 'deregister-test', createLogger('test', 'silent'));
});

afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  await bus?.nc.close();
  await sched?.stop();
  await env?.cleanup();
  rmSync(scratch, { recursive: true, force: true });
});

const assign = async (workerId: string, command: string): Promise<{ id: string; ack: AssignmentAck }> => {
  const a: Assignment = { execution_id: newId(), job_id: null, attempt: 1, spec: spec({ command }) };
  const reply = await bus.nc.request(bus.subjects.assign(workerId), encodeJson(a), { timeout: 5000 });
  return { id: a.execution_id, ack: decodeJson(reply.data) as AssignmentAck };
};

it('a deregistered agent drains and exits 0; the registry keeps it stopped', async () => {
  const id = newId();
  const agent = startAgentProcess(env.natsPrefix, id, { HODEI_SCHEDULER_URL: sched.url, HODEI_HEARTBEAT_INTERVAL_MS: '200' });
  agents.push(agent);
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

it('an agent deregistered while its drain message went astray drains on its next heartbeat and exits 0', async () => {
  const id = newId();
  const agent = startAgentProcess(env.natsPrefix, id, { HODEI_SCHEDULER_URL: sched.url, HODEI_HEARTBEAT_INTERVAL_MS: '200' });
  agents.push(agent);
  await workerOnline(sched.url, id, 20_000);
  const release = join(scratch, 'release');
  const statuses: ExecutionStatusEvent[] = [];
  bus.nc.subscribe(bus.subjects.executionStatusAdhocAll, { callback: (_e, m) => void statuses.push(decodeJson(m.data) as ExecutionStatusEvent) });
  await bus.nc.flush();
  const job = await assign(id, `while [ ! -e ${release} ]; do sleep 0.05; done`);
  expect(job.ack.accepted).toBe(true);

  // what DELETE /workers/:id records, without the drain message it publishes
  await sched.ctx.db.query(`UPDATE workers SET status = 'stopped' WHERE id = $1`, [id]);
  // before: the agent heard 'stopped' in every heartbeat's answer and idled on for ever
  expect(await waitFor(() => agent.stdout().includes('deregistered this worker'), 10_000)).toBe(true);
  expect((await assign(id, 'true')).ack).toEqual({ accepted: false, reason: 'worker is draining' });
  expect(agent.proc.exitCode).toBeNull(); // its running job finishes first
  writeFileSync(release, '');
  const exit = await Promise.race([agent.exit, new Promise<'running'>((r) => setTimeout(() => r('running'), 15_000))]);
  expect(exit).toBe(0);
  expect(await waitFor(() => statuses.some((e) => e.execution_id === job.id && e.status === 'completed'))).toBe(true);
}, 40_000);
