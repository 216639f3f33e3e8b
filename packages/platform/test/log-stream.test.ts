// The JetStream logs stream is bounded in bytes and refuses a publish when full, rather than
// deleting lines worker-manager has not stored yet (by age or to make room).
import { DiscardPolicy, RetentionPolicy } from '@nats-io/jetstream';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { connectBus, createLogger, createTestEnv, type Bus, type TestEnv } from '../src/index.js';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const quiet = createLogger('test', 'silent');
let env: TestEnv;
let bus: Bus | undefined;

beforeEach(() => {
  env = createTestEnv();
});
afterEach(async () => {
  await bus?.nc.close();
  bus = undefined;
  await env.cleanup(); // both streams, whichever test made them
});

const message = (n: number) => JSON.stringify({ execution_id: 'x', lines: [{ seq: n, stream: 'stdout', line: 'x'.repeat(10_000), timestamp: new Date().toISOString() }] });

test('the logs stream has a byte limit, no age limit, and refuses a publish when full: what it holds stays', async () => {
  bus = await connectBus(NATS_URL, env.natsPrefix, 'log-stream-test', quiet, { logStreamMaxBytes: 200_000 });
  const { config } = await bus.jsm.streams.info(bus.subjects.logsStream);
  expect(config).toMatchObject({ retention: RetentionPolicy.Limits, max_bytes: 200_000, discard: DiscardPolicy.New, max_age: 0 });

  let refused: Error | undefined;
  let stored = 0;
  for (let n = 1; n <= 40 && !refused; n++) {
    await bus.js.publish(bus.subjects.logs('x'), message(n)).then(
      () => stored++,
      (err: Error) => (refused = err),
    );
  }
  expect(refused?.message).toMatch(/maximum bytes exceeded/);
  const { state } = await bus.jsm.streams.info(bus.subjects.logsStream);
  expect(state).toMatchObject({ first_seq: 1, messages: stored });
  expect(state.bytes).toBeLessThanOrEqual(200_000);
});

test('a logs stream made by an earlier version (1 day max_age, no byte limit) is brought up to date without losing a message', async () => {
  const old = await connectBus(NATS_URL, env.natsPrefix, 'log-stream-test', quiet);
  await old.jsm.streams.update(old.subjects.logsStream, { subjects: old.subjects.logsSubjects, max_age: 86_400e9, max_bytes: -1, discard: DiscardPolicy.Old });
  for (let n = 1; n <= 30; n++) await old.js.publish(old.subjects.logs('x'), message(n)); // about 300 KB, none stored yet
  await old.nc.close();

  bus = await connectBus(NATS_URL, env.natsPrefix, 'log-stream-test', quiet, { logStreamMaxBytes: 200_000 });
  const { config, state } = await bus.jsm.streams.info(bus.subjects.logsStream);
  expect(state).toMatchObject({ first_seq: 1, messages: 30 });
  expect(config).toMatchObject({ discard: DiscardPolicy.New, max_age: 0 });
  // still bounded, above what it holds; the configured limit applies once it holds less
  expect(config.max_bytes).toBeGreaterThan(state.bytes);

  await bus.jsm.streams.purge(bus.subjects.logsStream);
  await (await connectBus(NATS_URL, env.natsPrefix, 'log-stream-test', quiet, { logStreamMaxBytes: 200_000 })).nc.close();
  expect((await bus.jsm.streams.info(bus.subjects.logsStream)).config.max_bytes).toBe(200_000);
});

test('a byte limit the NATS server has no room for stops the start with a message naming the variable', async () => {
  await expect(connectBus(NATS_URL, env.natsPrefix, 'log-stream-test', quiet, { logStreamMaxBytes: 2 ** 50 })).rejects.toThrow(
    /HODEI_LOG_STREAM_MAX_BYTES \(1125899906842624 bytes\).*insufficient storage resources/,
  );
});
