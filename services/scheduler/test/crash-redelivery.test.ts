// A scheduler killed (-9) after it had taken a queued execution from NATS, before it stored it:
// the next scheduler places it within seconds, not after a 30 s ack wait.
import { connectBus, createLogger, createTestEnv, serviceAddresses, workerOnline, type Bus, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import { startWorker, type WorkerHandle } from '@hodei/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { executeOn, finishedOn } from '../../worker-manager/test/helpers.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startScheduler } from '../src/service.js';

let env: TestEnv;
let schedConfig: Config;
let sched: RunningService | undefined;
let wm: RunningService;
let worker: WorkerHandle;
let bus: Bus;
/** The scheduler's consumers' ack wait here: shorter than the services' ACK_WAIT_MS (5 s), so that waits past it take less. */
const ACK_WAIT = 2000;

beforeAll(async () => {
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 5000 };
  schedConfig = env.config('scheduler', { ...common, port: ports.scheduler, ackWaitMs: ACK_WAIT });
  sched = await startScheduler(schedConfig);
  wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
  worker = await startWorker({
    natsUrl: schedConfig.natsUrl,
    natsPrefix: schedConfig.natsPrefix,
    schedulerUrl: sched.url,
    heartbeatIntervalMs: 200,
    logLevel: 'silent',
  });
  await workerOnline(sched.url, worker.id, 10_000);
  bus = await connectBus(schedConfig.natsUrl, schedConfig.natsPrefix, 'test-dead-scheduler', createLogger('test', 'silent'));
}, 60_000);

afterAll(async () => {
  await worker?.stop({ force: true });
  await wm?.stop();
  await sched?.stop();
  await bus?.nc.close();
  await env?.cleanup();
}, 60_000);

it('a queued execution a killed scheduler had taken and not stored is placed by the next one within seconds', async () => {
  await sched!.stop();
  sched = undefined;
  const { eventsStream } = bus.subjects;
  // as an install made before: its consumers waited 30 s for an ack
  await bus.jsm.consumers.update(eventsStream, 'scheduler-queue-adhoc', { ack_wait: 30e9 });

  const ex = await executeOn(wm.url, { command: 'echo placed' });
  // the killed scheduler had taken it (delivered, never acked)
  const taken = await (await bus.js.consumers.get(eventsStream, 'scheduler-queue-adhoc')).fetch({ max_messages: 1, expires: 5000 });
  let delivered = 0;
  for await (const m of taken) delivered += m.info.deliveryCount;
  expect(delivered).toBe(1);

  const restarted = Date.now();
  sched = await startScheduler(schedConfig);
  const done = await finishedOn(wm.url, ex.id, 20_000);
  expect(done).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1 });
  expect(Date.now() - restarted).toBeLessThan(ACK_WAIT + 5000);
}, 60_000);

it('queued executions whose storing is held up longer than the ack wait are not delivered again meanwhile, and run once', async () => {
  const lock = await sched!.ctx.db.connect();
  let redelivered: number;
  const ids: string[] = [];
  try {
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE queue IN EXCLUSIVE MODE'); // inserts wait, as on a stalled database
    for (let k = 0; k < 5; k++) ids.push((await executeOn(wm.url, { command: `echo ${k}` })).id);
    await new Promise((r) => setTimeout(r, ACK_WAIT * 1.6)); // past the ack wait
    redelivered = (await bus.jsm.consumers.info(bus.subjects.eventsStream, 'scheduler-queue-adhoc')).num_redelivered;
  } finally {
    await lock.query('COMMIT');
    lock.release();
  }
  for (const id of ids) expect(await finishedOn(wm.url, id, 20_000)).toMatchObject({ status: 'completed', attempt: 1 });
  expect(redelivered).toBe(0);
}, 60_000);
