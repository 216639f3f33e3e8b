// A worker-manager killed (-9) while it stored log lines: the batches it had taken from the stream
// and not stored come back to the next one within seconds (not after a 30 s ack wait), and the
// execution's final status waits for them, so its logs, its stream and `log_lines` have every line.
import { connectBus, createLogger, createTestEnv, type Bus, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { executeOn, lines, logEvents, openSse, publishLines, publishStatus, until } from './helpers.js';

let env: TestEnv;
let wm: RunningService | undefined;
let wmConfig: Config;
let worker: Bus;
/** The consumers' ack wait here: shorter than the services' ACK_WAIT_MS (5 s), so that waits past it take less. */
const ACK_WAIT = 2000;

beforeAll(async () => {
  env = createTestEnv();
  wmConfig = env.config('worker-manager', { ackWaitMs: ACK_WAIT });
  worker = await connectBus(wmConfig.natsUrl, wmConfig.natsPrefix, 'test-worker', createLogger('test', 'silent'));
}, 60_000);

afterAll(async () => {
  await wm?.stop();
  await worker?.nc.close();
  await env?.cleanup();
}, 60_000);

const storedLines = async (id: string) =>
  ((await (await fetch(`${wm!.url}/api/v1/executions/${id}/logs?limit=1000`)).json()) as { lines: LogLine[] }).lines;

it('lines a killed worker-manager had taken but not stored are there within seconds, before the final status', async () => {
  wm = await startWorkerManager(wmConfig);
  const id = (await executeOn(wm.url, { command: 'x' })).id;
  await wm.stop();
  wm = undefined;
  const { logsStream } = worker.subjects;
  // as an install made before: its consumer waited 30 s for an ack
  await worker.jsm.consumers.update(logsStream, 'worker-manager-logs', { ack_wait: 30e9 });

  // the killed worker-manager had taken lines 1..100 (delivered, never acked), then the job went on and ended
  await publishLines(worker, id, lines(1, 100));
  const taken = await (await worker.js.consumers.get(logsStream, 'worker-manager-logs')).fetch({ max_messages: 1, expires: 5000 });
  for await (const m of taken) expect(m.info.streamSequence).toBeGreaterThan(0);
  await publishLines(worker, id, lines(101, 300));
  await publishStatus(worker, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 300, duration_ms: 10 });

  const restarted = Date.now();
  wm = await startWorkerManager(wmConfig);
  // a follower that comes while 101..300 are stored and 1..100 not yet: its history stops at once
  await until(async () => (await storedLines(id)).length === 200, 10_000, 'lines 101..300 stored');
  const sse = await openSse(`${wm.url}/api/v1/executions/${id}/logs/stream`);
  const done = await until(async () => {
    const e = await (await fetch(`${wm!.url}/api/v1/executions/${id}`)).json();
    return e.status === 'completed' && e;
  }, 20_000, 'completed');
  // when it reads completed, every line is stored
  expect((await storedLines(id)).map((l) => l.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  expect(done.log_lines).toBe(300);
  expect(Date.now() - restarted).toBeLessThan(10_000);
  // and a follower (hodei logs -f) got them all, in order, then completed at once (not after the
  // stream's 10 s wait for an ended execution's last lines: 101..300 came to it from the store)
  await sse.waitFor((e) => e.event === 'completed', 1000);
  expect(logEvents(sse).map((l) => l.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
}, 60_000);

it('log batches held up longer than the ack wait before their insert are not delivered again meanwhile', async () => {
  const id = (await executeOn(wm!.url, { command: 'x' })).id;
  const { logsStream } = worker.subjects;
  const lock = await wm!.ctx.db.connect();
  let redelivered: number;
  try {
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE log_lines IN EXCLUSIVE MODE'); // inserts wait, as on a stalled database
    for (let k = 0; k < 5; k++) await publishLines(worker, id, lines(k * 100 + 1, k * 100 + 100));
    await new Promise((r) => setTimeout(r, ACK_WAIT * 1.6)); // past the ack wait
    redelivered = (await worker.jsm.consumers.info(logsStream, 'worker-manager-logs')).num_redelivered;
  } finally {
    await lock.query('COMMIT');
    lock.release();
  }
  await until(async () => (await storedLines(id)).length === 500, 10_000, 'all 500 lines');
  expect(redelivered).toBe(0);
}, 60_000);

it('a final status a killed worker-manager had taken and not applied is applied by the next one within seconds', async () => {
  const id = (await executeOn(wm!.url, { command: 'x' })).id;
  await wm!.stop();
  wm = undefined;
  const { eventsStream } = worker.subjects;
  // as an install made before: its status consumers waited 30 s for an ack
  await worker.jsm.consumers.update(eventsStream, 'worker-manager-status', { ack_wait: 30e9 });
  await publishStatus(worker, { execution_id: id, status: 'completed', exit_code: 0, duration_ms: 10 });
  // the killed worker-manager had taken it (delivered, never acked)
  const taken = await (await worker.js.consumers.get(eventsStream, 'worker-manager-status')).fetch({ max_messages: 1, expires: 5000 });
  for await (const m of taken) expect(m.info.deliveryCount).toBe(1);

  const restarted = Date.now();
  wm = await startWorkerManager(wmConfig);
  await until(async () => (await (await fetch(`${wm!.url}/api/v1/executions/${id}`)).json()).status === 'completed', 20_000, 'completed');
  expect(Date.now() - restarted).toBeLessThan(ACK_WAIT + 5000);
}, 60_000);

it('a final status waiting longer than the ack wait for its lines is not delivered again meanwhile', async () => {
  const id = (await executeOn(wm!.url, { command: 'x' })).id;
  await publishStatus(worker, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 100, duration_ms: 10 });
  // its lines trickle in for longer than the ack wait: the status waits for them all along
  const every = ACK_WAIT / 5;
  for (let k = 0; k * every < ACK_WAIT * 1.4; k++) {
    await publishLines(worker, id, lines(k * 10 + 1, k * 10 + 10));
    await new Promise((r) => setTimeout(r, every));
  }
  const redelivered = (await worker.jsm.consumers.info(worker.subjects.eventsStream, 'worker-manager-status')).num_redelivered;
  expect((await (await fetch(`${wm!.url}/api/v1/executions/${id}`)).json()).status).toBe('queued');
  await publishLines(worker, id, lines(71, 100));
  await until(async () => (await (await fetch(`${wm!.url}/api/v1/executions/${id}`)).json()).status === 'completed', 20_000, 'completed');
  expect((await storedLines(id)).length).toBe(100);
  expect(redelivered).toBe(0);
}, 60_000);
