// POST /execute when NATS's acknowledgement of the queued execution does not come in time: the
// message may be stored (the ack late or lost) or not. Either way the execution is kept and answered
// 202, and sent again under the same message id (NATS drops a copy it already has), so it runs once,
// tracked. Only a refusal by NATS is a 503 with nothing recorded. worker-manager reaches NATS
// through a relay that can hold back or cut what passes; the scheduler and a real worker do not.
import { join } from 'node:path';
import { encodeJson, forwardTcp, newId, type RunningService, type TcpForwarder, type TestEnv } from '@hodei/platform';
import type { Execution, ExecutionQueuedEvent } from '@hodei/types';
import type { WorkerHandle } from '@hodei/worker';
import { DiscardPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { resolveSpec } from '../src/executions.js';
import { call, finishedOn, getExecutionOn, until } from './helpers.js';
import { runs, startRelayedStack, stopRelayedStack } from './relayed-stack.js';

const LABELS = { t: 'queued-ack' };

let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let worker: WorkerHandle;
let link: TcpForwarder;
let relayPort: number;
let natsUrl: URL;
let scratch = '';

beforeAll(async () => {
  ({ env, sched, wm, worker, link, relayPort, natsUrl, scratch } = await startRelayedStack('queued-ack', LABELS));
}, 60_000);

afterAll(() => stopRelayedStack({ worker, wm, sched, link, env, scratch }), 60_000);

const executions = async () => (await (await call(wm.url, 'GET', '/api/v1/executions')).json()) as Execution[];

/** POST /execute as `hodei run` sends it: a 503 is sent again after its Retry-After. */
async function execute(body: unknown): Promise<{ status: number; ms: number; body: Execution & { detail?: string } }> {
  const started = performance.now();
  const res = await call(wm.url, 'POST', '/api/v1/execute', body);
  return { status: res.status, ms: performance.now() - started, body: (await res.json()) as Execution & { detail?: string } };
}

async function asTheCliWould(first: { status: number; body: Execution }, body: unknown): Promise<Execution> {
  let answer = first;
  for (let tries = 1; answer.status === 503 && tries < 5; tries++) {
    await new Promise((r) => setTimeout(r, 1000));
    answer = await execute(body);
  }
  expect(answer.status).toBe(202);
  return answer.body;
}

it('the queued execution stored by NATS but its acknowledgement late: answered 202 before a caller with a 5 s time-out gives up, and the job runs once, tracked to its end', async () => {
  const marker = join(scratch, 'late-ack');
  const body = { command: `echo ran >> ${marker}; echo done`, labels: LABELS };
  const before = new Set((await executions()).map((e) => e.id));
  link.hold('replies');
  let first: Awaited<ReturnType<typeof execute>>;
  try {
    first = await execute(body);
    // NATS had it: the scheduler placed it while worker-manager waited for the acknowledgement
    await until(async () => runs(marker) > 0, 10_000, 'the job to run');
  } finally {
    link.release();
  }
  const submitted = await asTheCliWould(first, body);
  const done = await finishedOn(wm.url, submitted.id, 20_000);
  await new Promise((r) => setTimeout(r, 1500)); // a second run would have started by now
  const listed = (await executions()).filter((e) => !before.has(e.id));
  expect({ answered: first.status, runs: runs(marker), executions: listed.map((e) => e.id) }).toEqual({ answered: 202, runs: 1, executions: [submitted.id] });
  expect(first.ms).toBeLessThan(4000);
  expect(done).toMatchObject({ status: 'completed', exit_code: 0, log_lines: 1, worker_id: worker.id });
  expect(first.body.id).toBe(submitted.id);
}, 60_000);

it('the queued execution lost on its way to NATS (the connection cut): answered 202 as queued, saying NATS has not confirmed it, and run once when NATS is back', async () => {
  const marker = join(scratch, 'cut');
  const body = { command: `echo ran >> ${marker}`, labels: LABELS };
  link.hold('both');
  const answer = execute(body);
  await new Promise((r) => setTimeout(r, 300));
  await link.close(); // what was held back never arrives
  const first = await answer;
  await new Promise((r) => setTimeout(r, 1000));
  const whileCut = first.status === 202 ? await getExecutionOn(wm.url, first.body.id) : null;
  const ranWhileCut = runs(marker);
  link = await forwardTcp(relayPort, natsUrl);
  const submitted = await asTheCliWould(first, body);
  const done = await finishedOn(wm.url, submitted.id, 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  expect({ answered: first.status, ranWhileCut, runs: runs(marker) }).toEqual({ answered: 202, ranWhileCut: 0, runs: 1 });
  expect(first.ms).toBeLessThan(4000);
  expect(whileCut).toMatchObject({ status: 'queued', waiting: expect.stringMatching(/^the message bus has not confirmed that it took the execution \(.+\); sending it again$/) });
  expect(done).toMatchObject({ status: 'completed', exit_code: 0, worker_id: worker.id });
}, 60_000);

it('NATS refusing the queued execution (its stream full): a 503 at once naming why, nothing recorded, nothing run; taken again once there is room', async () => {
  const marker = join(scratch, 'refused');
  const body = { command: `echo ran >> ${marker}`, labels: LABELS };
  const jsm = wm.ctx.bus.jsm;
  const stream = wm.ctx.bus.subjects.eventsStream;
  const before = await executions();
  const { state } = await jsm.streams.info(stream);
  await jsm.streams.update(stream, { max_msgs: state.messages, discard: DiscardPolicy.New });
  let refused: Awaited<ReturnType<typeof execute>>;
  try {
    refused = await execute(body);
  } finally {
    await jsm.streams.update(stream, { max_msgs: -1, discard: DiscardPolicy.Old });
  }
  expect(refused.status).toBe(503);
  expect(refused.ms).toBeLessThan(1000);
  expect(refused.body.detail).toMatch(/^the message bus did not accept the execution \(.*maximum messages.*\); nothing was done, try again$/);
  expect((await executions()).map((e) => e.id)).toEqual(before.map((e) => e.id));

  const again = await asTheCliWould(refused, body);
  expect((await finishedOn(wm.url, again.id, 20_000)).status).toBe('completed');
  await new Promise((r) => setTimeout(r, 1000));
  expect(runs(marker)).toBe(1);
}, 60_000);

it('a queued execution that worker-manager has no record of (its row deleted) is stopped where it starts, not run unseen', async () => {
  const marker = join(scratch, 'unrecorded');
  const bus = wm.ctx.bus;
  const id = newId();
  const spec = resolveSpec({ command: `sleep 2; echo ran >> ${marker}`, labels: LABELS }, null);
  const event: ExecutionQueuedEvent = { execution_id: id, job_id: null, priority: spec.priority, spec, attempt: 1, created_at: new Date().toISOString() };
  await bus.js.publish(bus.subjects.forExecution(null).queued, encodeJson(event), { msgID: id });
  // it starts (the worker reports it running), and is stopped before it gets to write the marker
  await new Promise((r) => setTimeout(r, 3500));
  expect(runs(marker)).toBe(0);
  expect((await call(wm.url, 'GET', `/api/v1/executions/${id}`)).status).toBe(404);
}, 30_000);
