// A live agent the scheduler forgot or wrote off becomes usable again by itself, and runs no job
// twice: the scheduler answers each heartbeat with what it thinks of the worker. Unknown (its
// registry row gone: forgotten, or the database reset) → the agent registers again; executions
// it still runs that were recorded lost when the scheduler counted it gone → the agent kills them.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { newId, pidGone, workerOnline, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../../../packages/worker/test/harness.js';
import { call, executeOn, finishedOn, getExecutionOn, until } from '../../worker-manager/test/helpers.js';
import { startAgentStack, stopAgentStack, type AgentStack } from './helpers.js';

let stack: AgentStack | undefined;
let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let bus: Bus;
let agent: AgentProcess;
let scratch: string;
const workerId = newId();

const registry = async () => {
  const res = await call(sched.url, 'GET', `/api/v1/workers/${workerId}`);
  return res.status === 200 ? ((await res.json()) as { status: string }).status : res.status;
};

beforeAll(async () => {
  stack = await startAgentStack('rejoin', 1000);
  ({ env, sched, wm, bus, scratch } = stack);
  agent = startAgentProcess(env.natsPrefix, workerId, {
    HODEI_SCHEDULER_URL: sched.url,
    HODEI_WORKER_LABELS: 'pool=rejoin',
    HODEI_HEARTBEAT_INTERVAL_MS: '200',
    HODEI_KILL_GRACE_MS: '300',
  });
  await workerOnline(sched.url, workerId, 20_000);
}, 60_000);

afterAll(() => stopAgentStack(stack, agent ? [agent] : []), 60_000);

it('an agent whose registry row is gone (forgotten, database reset) registers again and gets work', async () => {
  await sched.ctx.db.query('DELETE FROM workers WHERE id = $1', [workerId]);
  expect(await registry()).toBe(404);
  // before: heartbeats from an unknown worker were ignored, and it idled on for ever
  await workerOnline(sched.url, workerId, 10_000);
  expect(agent.stdout()).toContain('registering again');
  const e = await executeOn(wm.url, { command: 'echo back', labels: { pool: 'rejoin' }, max_retries: 0 });
  expect(await finishedOn(wm.url, e.id, 15_000)).toMatchObject({ status: 'completed', worker_id: workerId });
}, 40_000);

it('an execution recorded lost while its worker lives on is killed there; the worker takes work again', async () => {
  const pidFile = join(scratch, 'pid');
  const e = await executeOn(wm.url, { command: `echo $$ > ${pidFile}; exec sleep 120`, labels: { pool: 'rejoin' }, max_retries: 0 });
  await until(async () => (await getExecutionOn(wm.url, e.id)).status === 'running' && existsSync(pidFile), 15_000, 'the execution running');
  const pid = Number(readFileSync(pidFile, 'utf8').trim());

  // worker-manager says the worker's process exited (as it does when it loses track of one it
  // started): the scheduler takes the worker offline and publishes its execution lost
  await bus.js.publish(bus.subjects.workerEvent(workerId, 'exited'), new Uint8Array());
  const lost = await until(async () => {
    const x = await getExecutionOn(wm.url, e.id);
    return x.status !== 'running' && x;
  }, 10_000, 'the execution recorded lost');
  expect(lost).toMatchObject({ status: 'lost', message: `worker ${workerId} exited` });

  // the agent's next heartbeat brings it online again, and the answer has it kill the job that
  // was written off (before: it ran on to its end, beside any retry placed elsewhere)
  await until(async () => pidGone(pid), 10_000, 'the written-off job killed on the live worker');
  // the agent's log line may reach its stdout after the signal has done its work
  await until(async () => agent.stdout().includes('killing them'), 5_000, 'the agent saying it killed them');
  await workerOnline(sched.url, workerId, 10_000);
  expect(await getExecutionOn(wm.url, e.id)).toMatchObject({ status: 'lost', message: `worker ${workerId} exited` });
  const next = await executeOn(wm.url, { command: 'echo again', labels: { pool: 'rejoin' }, max_retries: 0 });
  expect(await finishedOn(wm.url, next.id, 15_000)).toMatchObject({ status: 'completed', worker_id: workerId });
}, 60_000);

it('a scheduler that stalled longer than the time-out does not count its live workers gone', async () => {
  await workerOnline(sched.url, workerId, 10_000);
  const e = await executeOn(wm.url, { command: 'sleep 3; echo survived', labels: { pool: 'rejoin' }, max_retries: 0 });
  await until(async () => (await getExecutionOn(wm.url, e.id)).status === 'running', 15_000, 'the execution running');
  // the scheduler (in this process) hears nothing for 2.5 s, with a time-out of 1 s; the agent beats on
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2_500);
  // before: the first check after the stall took the worker offline and the job was recorded lost
  expect(await finishedOn(wm.url, e.id, 15_000)).toMatchObject({ status: 'completed', worker_id: workerId });
  expect(await registry()).toBe('online');
}, 40_000);
