// A message worker-manager cannot read (on the logs or a status subject) is dropped once, for good:
// it is not delivered again, and it does not hold the logs consumer's ack floor, below which stored
// lines are purged from the (size-limited) logs stream.
import { connectBus, createLogger, createTestEnv, encodeJson, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { call, lines, publishLines, until } from './helpers.js';

const ACK_WAIT = 1000;
let env: TestEnv;
let bus: Bus;
let svc: RunningService;

beforeAll(async () => {
  env = createTestEnv();
  bus = await connectBus(process.env.NATS_URL ?? 'nats://127.0.0.1:4222', env.natsPrefix, 'malformed-test', createLogger('test', 'silent'));
  svc = await startWorkerManager(env.config('worker-manager', { logStreamKeepBytes: 1000, ackWaitMs: ACK_WAIT }));
});
afterAll(async () => {
  await svc?.stop();
  await bus?.nc.close();
  await env?.cleanup();
});

it('a malformed log message is dropped once: the stored lines after it still leave the stream', async () => {
  const res = await call(svc.url, 'POST', '/api/v1/execute', { command: 'true' });
  const { id } = (await res.json()) as { id: string };
  await bus.js.publish(bus.subjects.logs(id), 'hello'); // no JSON
  for (let m = 0; m < 20; m++) await publishLines(bus, id, lines(m * 10 + 1, m * 10 + 10, 'stdout', (n) => `line ${n} ${'x'.repeat(100)}`));

  const messages = async () => (await bus.jsm.streams.info(bus.subjects.logsStream)).state.messages;
  // over HODEI_LOG_STREAM_KEEP_BYTES (1000 here): everything stored is purged, within a purge interval (5 s)
  await until(async () => (await messages()) === 0, 15_000, 'the logs stream purged past the malformed message');
  const info = await bus.jsm.consumers.info(bus.subjects.logsStream, 'worker-manager-logs');
  expect(info.ack_floor.stream_seq).toBe(21); // the malformed message and the 20 after it
  expect(info.num_ack_pending).toBe(0);
  expect(info.num_redelivered).toBe(0);
  const stored = (await (await call(svc.url, 'GET', `/api/v1/executions/${id}/logs?limit=1000`)).json()) as { lines: unknown[] };
  expect(stored.lines).toHaveLength(200);
});

it('a malformed status event is dropped once, not delivered again at every ack wait', async () => {
  const seq = (await bus.js.publish(bus.subjects.forExecution(null).status('01a23511-0000-7000-8000-000000000000'), encodeJson({ status: 'bogus' }))).seq;
  await new Promise((r) => setTimeout(r, 3 * ACK_WAIT));
  const info = await bus.jsm.consumers.info(bus.subjects.eventsStream, 'worker-manager-status-adhoc');
  expect(info.ack_floor.stream_seq).toBeGreaterThanOrEqual(seq);
  expect(info.num_ack_pending).toBe(0);
  expect(info.num_redelivered).toBe(0);
});
