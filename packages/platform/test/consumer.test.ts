import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { ACK_WAIT_MS, connectBus, createLogger, createTestEnv, deleteStreams, ensureConsumer, type Bus, type TestEnv } from '../src/index.js';

let env: TestEnv;
let bus: Bus;

beforeEach(async () => {
  env = createTestEnv();
  bus = await connectBus(process.env.NATS_URL ?? 'nats://127.0.0.1:4222', env.natsPrefix, 'consumer-test', createLogger('test', 'silent'));
});

afterEach(async () => {
  await deleteStreams(bus);
  await bus.nc.close();
});

const spec = () => ({ durable: 'svc-status', filter: bus.subjects.executionStatusAll, maxAckPending: 10_000 });

test('creates the durable consumer with explicit acks, the services ack wait and the given limit', async () => {
  const consumer = await ensureConsumer(bus, bus.subjects.eventsStream, spec());
  const { config } = await consumer.info();
  expect(config).toMatchObject({
    durable_name: 'svc-status',
    filter_subject: bus.subjects.executionStatusAll,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ACK_WAIT_MS * 1e6,
    max_ack_pending: 10_000,
  });
});

test('brings a consumer made by an earlier version (30 s ack wait, another filter) up to date', async () => {
  await bus.jsm.consumers.add(bus.subjects.eventsStream, {
    durable_name: 'svc-status',
    filter_subject: bus.subjects.executionStatusAdhocAll,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: 30e9,
  });
  const { config } = await (await ensureConsumer(bus, bus.subjects.eventsStream, spec())).info();
  expect(config.ack_wait).toBe(ACK_WAIT_MS * 1e6);
  expect(config.filter_subject).toBe(bus.subjects.executionStatusAll);
});

test('replicas starting at the same moment share one consumer', async () => {
  const consumers = await Promise.all(Array.from({ length: 4 }, () => ensureConsumer(bus, bus.subjects.eventsStream, spec())));
  expect(consumers).toHaveLength(4);
  const names = [];
  for await (const c of bus.jsm.consumers.list(bus.subjects.eventsStream)) names.push(c.name);
  expect(names).toEqual(['svc-status']);
});
