// A scheduler restarted while real workers run: their heartbeats sent while no scheduler listened
// were never recorded, yet none is taken for dead. A job runs to the end as one attempt with every
// line, and a job placed just after the restart runs too. The same holds when the database is down
// for longer than the time-out, and when the scheduler's own connection to NATS is: the heartbeats of
// that time could not be recorded either.
import { createLogger, createTestEnv, forwardTcp, freePort, serviceAddresses, workerOnline, type Config, type TcpForwarder, type RunningService, type TestEnv } from '@hodei/platform';
import type { Execution, LogLine } from '@hodei/types';
import { startWorker, type WorkerHandle } from '@hodei/worker';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { call, executeOn, finishedOn, getExecutionOn, until } from '../../worker-manager/test/helpers.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startScheduler } from '../src/service.js';

// A worker beats every second; the restarted scheduler checks for silence every 150 ms. Without a
// grace after start-up a worker whose first beat comes later than the first check (85 % of the
// time, for each of three workers) would be taken for dead.
const HEARTBEAT_MS = 1000;
const TIMEOUT_MS = 1500;
const LINES = 40;

let env: TestEnv;
let schedConfig: Config;
let sched: RunningService | undefined;
let wm: RunningService;
let workers: WorkerHandle[] = [];

beforeAll(async () => {
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, heartbeatIntervalMs: HEARTBEAT_MS, heartbeatTimeoutMs: TIMEOUT_MS };
  schedConfig = env.config('scheduler', { ...common, port: ports.scheduler });
  sched = await startScheduler(schedConfig);
  wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
  workers = await Promise.all(
    [1, 2, 3].map(() =>
      startWorker({
        natsUrl: schedConfig.natsUrl,
        natsPrefix: schedConfig.natsPrefix,
        schedulerUrl: sched!.url,
        labels: { t: 'restart' },
        heartbeatIntervalMs: HEARTBEAT_MS,
        killGraceMs: 300,
        logLevel: 'silent',
      }),
    ),
  );
  for (const w of workers) await workerOnline(sched.url, w.id, 10_000);
}, 60_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop({ force: true })));
  await wm?.stop();
  await sched?.stop();
  await env?.cleanup();
}, 60_000);

const storedLines = async (id: string) =>
  ((await (await call(wm.url, 'GET', `/api/v1/executions/${id}/logs?limit=1000`)).json()) as { lines: LogLine[] }).lines;

const statuses = async (url: string) =>
  Promise.all(workers.map(async (w) => ((await (await call(url, 'GET', `/api/v1/workers/${w.id}`)).json()) as { status: string }).status));

/** Waits for the execution to end, noting every status the workers had meanwhile. */
async function endedWatchingWorkers(url: string, executionId: string) {
  const seen = new Set<string>();
  const done = await until(async () => {
    for (const status of await statuses(url)) seen.add(status);
    const e = await getExecutionOn(wm.url, executionId);
    return e.status !== 'running' && e.status !== 'queued' && e;
  }, 20_000, 'the job to end');
  return { seen, done };
}

/** A job printing `lines` lines, one every 200 ms (retried once), once its first lines are stored. */
async function printingJob(lines: number): Promise<Execution> {
  const job = await executeOn(wm.url, {
    command: `for i in $(seq 1 ${lines}); do echo line-$i; sleep 0.2; done`,
    labels: { t: 'restart' },
    max_retries: 1,
  });
  await until(async () => (await storedLines(job.id)).length >= 2, 10_000, 'the first lines');
  return job;
}

it('workers heard from within one time-out after a scheduler restart stay online, and a running job completes as one attempt', async () => {
  // 40 lines, one every 200 ms: ~8 s, outlasting the scheduler's downtime and its time-out after
  const job = await printingJob(LINES);

  const url = sched!.url;
  await sched!.stop();
  sched = undefined;
  // down for twice the time-out: the worker's last recorded heartbeat is older than that at restart
  await new Promise((r) => setTimeout(r, 2 * TIMEOUT_MS));
  sched = await startScheduler(schedConfig);
  expect(sched.url).toBe(url);
  const placedAfter = await executeOn(wm.url, { command: 'echo placed-after-restart', labels: { t: 'restart' } });

  const { seen, done } = await endedWatchingWorkers(url, job.id);
  expect(seen).toEqual(new Set(['online']));
  expect(done).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1, message: 'exited with code 0', log_lines: LINES });
  expect((await storedLines(job.id)).map((l) => l.line)).toEqual(Array.from({ length: LINES }, (_, i) => `line-${i + 1}`));

  const after: Execution = await finishedOn(wm.url, placedAfter.id, 10_000);
  expect(after).toMatchObject({ status: 'completed', attempt: 1, log_lines: 1 });
  expect((await storedLines(placedAfter.id)).map((l) => l.line)).toEqual(['placed-after-restart']);
  expect(await statuses(url)).toEqual(['online', 'online', 'online']);
}, 60_000);

it('a database outage longer than the time-out: workers stay online, and a running job completes as one attempt with every line', async () => {
  const lines = 25;
  // 25 lines, one every 200 ms: ~5 s, outlasting the outage and one time-out after it
  const job = await printingJob(lines);

  // the workers' last recorded heartbeat is older than the time-out when the database is back
  await env.databaseDown(() => new Promise((r) => setTimeout(r, TIMEOUT_MS + 500)));

  const url = sched!.url;
  const { seen, done } = await endedWatchingWorkers(url, job.id);
  expect(seen).toEqual(new Set(['online']));
  expect(done).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1, log_lines: lines });
  expect((await storedLines(job.id)).map((l) => l.line)).toEqual(Array.from({ length: lines }, (_, i) => `line-${i + 1}`));
}, 30_000);

it('a database outage: each background loop says its failure when it starts and when it works again, not on every retry', async () => {
  const url = sched!.url;
  await sched!.stop();
  const said: { level: string; msg: string }[] = [];
  const logger = createLogger('scheduler', 'silent');
  // what the placer's and the firer's child loggers say comes here too
  vi.spyOn(logger, 'child').mockReturnValue(logger as never);
  for (const level of ['error', 'warn', 'info'] as const) {
    vi.spyOn(logger, level).mockImplementation(((...args: unknown[]) => void said.push({ level, msg: String(args.find((a) => typeof a === 'string')) })) as never);
  }
  sched = await startScheduler(schedConfig, logger);
  for (const w of workers) await workerOnline(url, w.id, 10_000);

  // three workers beat every second and the loops run every second: each would fail three times or more
  await env.databaseDown(() => new Promise((r) => setTimeout(r, 3000)));

  const failed = () => said.filter((s) => s.level === 'error').map((s) => s.msg);
  expect(failed()).toEqual([...new Set(failed())]);
  await until(async () => failed().every((m) => said.some((s) => s.msg === `${m.split(' failed; ')[0]} works again`)), 10_000, 'every failing loop to work again');
  expect(failed()).toContain('placement safety tick failed; it is tried again (said again only once it has worked)');
  expect(failed()).toContain('recording heartbeats failed; it is tried again (said again only once it has worked)');
  expect(failed()).toEqual([...new Set(failed())]);
  expect(await statuses(url)).toEqual(['online', 'online', 'online']);
}, 30_000);

/**
 * The scheduler reaches NATS through a forwarder, the workers directly: `silence` cuts what the
 * scheduler hears of their heartbeats for longer than the time-out, `restore` ends it. The workers
 * stay online and a job running meanwhile completes as one attempt with every line.
 */
async function schedulerCutOffFromNats(silence: (link: TcpForwarder) => Promise<void> | void, restore: (link: TcpForwarder, port: number) => Promise<TcpForwarder> | TcpForwarder): Promise<void> {
  const port = await freePort();
  let link = await forwardTcp(port, new URL(schedConfig.natsUrl));
  const url = sched!.url;
  await sched!.stop();
  sched = await startScheduler({ ...schedConfig, natsUrl: `nats://127.0.0.1:${port}` });
  try {
    for (const w of workers) await workerOnline(url, w.id, 10_000);
    const lines = 25;
    const job = await printingJob(lines);

    await silence(link);
    await new Promise((r) => setTimeout(r, TIMEOUT_MS + 1000));
    expect(await statuses(url)).toEqual(['online', 'online', 'online']);
    link = await restore(link, port);

    const { seen, done } = await endedWatchingWorkers(url, job.id);
    expect(seen).toEqual(new Set(['online']));
    expect(done).toMatchObject({ status: 'completed', exit_code: 0, attempt: 1, log_lines: lines });
    expect((await storedLines(job.id)).map((l) => l.line)).toEqual(Array.from({ length: lines }, (_, i) => `line-${i + 1}`));
  } finally {
    link.release();
    await sched?.stop();
    sched = await startScheduler(schedConfig);
    await link.close();
  }
}

it("the scheduler's own NATS connection down for longer than the time-out: workers stay online, and a running job completes as one attempt with every line", async () => {
  await schedulerCutOffFromNats(
    (link) => link.close(),
    (_link, port) => forwardTcp(port, new URL(schedConfig.natsUrl)),
  );
}, 40_000);

it("the scheduler's connection to NATS gone silent (no disconnect) for longer than the time-out: workers stay online, and a running job completes as one attempt with every line", async () => {
  // what NATS sends the scheduler, and what it sends NATS, is held up: its client sees no disconnect
  await schedulerCutOffFromNats(
    (link) => link.hold(),
    (link) => (link.release(), link),
  );
}, 40_000);
