// An execution runs on one worker at a time. A worker that answers its assignment after the
// scheduler stopped waiting may have taken it: it keeps the execution (asked again, it says yes
// again) rather than the execution being placed on a second worker as well. A run the scheduler
// finds on a worker it did not place it on is killed there and reports nothing, so the status
// recorded is that of the run on the worker it is placed on.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJson, encodeJson, newId, pidGone, workerOnline, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import type { ExecutionStatusEvent, WorkerHeartbeat } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../../../packages/worker/test/harness.js';
import { executeOn, finishedOn, getExecutionOn, until } from '../../worker-manager/test/helpers.js';
import { startAgentStack, stopAgentStack, type AgentStack } from './helpers.js';

let stack: AgentStack | undefined;
let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let bus: Bus;
let scratch: string;
const agents: AgentProcess[] = [];
const roomy = newId();
const small = newId();

/** The scheduler's count of assignments with this outcome. */
const placements = async (outcome: string) => {
  const text = await (await fetch(`${sched.url}/metrics`)).text();
  return Number(new RegExp(`^hodei_placements_total\\{[^}]*outcome="${outcome}"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
};

function agent(id: string, slots: number): AgentProcess {
  const a = startAgentProcess(env.natsPrefix, id, {
    HODEI_SCHEDULER_URL: sched.url,
    HODEI_WORKER_LABELS: 'pool=late',
    HODEI_WORKER_SLOTS: String(slots),
    HODEI_HEARTBEAT_INTERVAL_MS: '200',
    HODEI_HEARTBEAT_TIMEOUT_MS: '5000',
    HODEI_KILL_GRACE_MS: '300',
  });
  agents.push(a);
  return a;
}

beforeAll(async () => {
  // a time-out that outlasts the agent's pause below: it stays online
  stack = await startAgentStack('late', 5000);
  ({ env, sched, wm, bus, scratch } = stack);
  agent(roomy, 8);
  agent(small, 2);
  await workerOnline(sched.url, roomy, 20_000);
  await workerOnline(sched.url, small, 20_000);
}, 60_000);

afterAll(() => stopAgentStack(stack, agents), 60_000);

it('a worker that takes its assignment after the scheduler stopped waiting runs it alone', async () => {
  const [roomyAgent] = agents;
  const runs = join(scratch, 'runs');
  // the worker with the most free slots gets it, but its agent does not run until the scheduler
  // stopped waiting for its answer: the assignment waits in its socket, taken once it runs again
  const unanswered = await placements('no_answer');
  roomyAgent!.proc.kill('SIGSTOP');
  const e = await executeOn(wm.url, { command: `echo "$HODEI_EXECUTION_ID" >> ${runs}; sleep 1`, labels: { pool: 'late' }, max_retries: 0 });
  await until(async () => (await placements('no_answer')) > unanswered, 10_000, 'the assignment unanswered');
  roomyAgent!.proc.kill('SIGCONT');
  expect(await finishedOn(wm.url, e.id, 20_000)).toMatchObject({ status: 'completed', worker_id: roomy });
  // before: placed again on the other worker after the time-out, it ran there too
  expect(readFileSync(runs, 'utf8').trim().split('\n')).toEqual([e.id]);
  const placed = await sched.ctx.db.query<{ worker_id: string }>('SELECT worker_id FROM queue WHERE execution_id = $1', [e.id]);
  expect(placed.rows[0]?.worker_id).toBe(roomy);
}, 40_000);

it('a run on a worker the execution is not placed on is killed there, and its end changes nothing recorded', async () => {
  const pidFile = join(scratch, 'pid');
  const e = await executeOn(wm.url, { command: `echo $$ > ${pidFile}; exec sleep 120`, labels: { pool: 'late' }, max_retries: 0 });
  await until(async () => (await getExecutionOn(wm.url, e.id)).status === 'running' && existsSync(pidFile), 15_000, 'the execution running');
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const { worker_id: here } = await getExecutionOn(wm.url, e.id);
  const elsewhere = here === roomy ? small : roomy;

  // the scheduler has it placed on the other worker (a claim released while this one took it,
  // then placed again): the run here is a second one
  const beats: WorkerHeartbeat[] = [];
  const sub = bus.nc.subscribe(bus.subjects.heartbeat(here!), {
    callback: (_e, m) => {
      beats.push(decodeJson(m.data) as WorkerHeartbeat);
    },
  });
  await sched.ctx.db.query(`UPDATE queue SET worker_id = $2, state = 'assigned' WHERE execution_id = $1`, [e.id, elsewhere]);
  await until(async () => pidGone(pid), 10_000, 'the second run killed');
  // once a heartbeat no longer lists it, whatever the agent published about its end is in the stream
  await until(async () => beats.some((b) => !b.running_executions.includes(e.id)), 10_000, 'the agent done with it');
  sub.unsubscribe();

  // the run where it is placed ends: its status is the one recorded (before: the killed run's
  // `lost` came first and stood)
  const end: ExecutionStatusEvent = {
    execution_id: e.id,
    job_id: null,
    worker_id: elsewhere,
    status: 'completed',
    exit_code: 0,
    message: 'exited with code 0',
    finished_at: new Date().toISOString(),
    timestamp: new Date().toISOString(),
  };
  await bus.js.publish(bus.subjects.forExecution(null).status(e.id), encodeJson(end));
  expect(await finishedOn(wm.url, e.id, 10_000)).toMatchObject({ status: 'completed', worker_id: elsewhere });
}, 40_000);
