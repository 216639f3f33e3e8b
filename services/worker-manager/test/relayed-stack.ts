// A scheduler, a real worker and a worker-manager that reaches NATS through a relay the test can hold
// back or cut (forwardTcp); the scheduler and the worker connect to NATS directly.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, forwardTcp, freePort, serviceAddresses, workerOnline, type Config, type RunningService, type TcpForwarder, type TestEnv } from '@hodei/platform';
import { startWorker, type WorkerHandle } from '@hodei/worker';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../src/service.js';

export interface RelayedStack {
  env: TestEnv;
  sched: RunningService;
  wm: RunningService;
  wmConfig: Config;
  worker: WorkerHandle;
  link: TcpForwarder;
  /** Where the relay listens: a new one after `link.close()` takes the same port. */
  relayPort: number;
  natsUrl: URL;
  /** A folder for the jobs' marker files. */
  scratch: string;
}

export async function startRelayedStack(name: string, labels: Record<string, string>, wmOverrides: Partial<Config> = {}): Promise<RelayedStack> {
  const scratch = mkdtempSync(join(tmpdir(), `hodei-${name}-`));
  const env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const schedConfig = env.config('scheduler', { urls, port: ports.scheduler });
  const natsUrl = new URL(schedConfig.natsUrl);
  const sched = await startScheduler(schedConfig);
  const relayPort = await freePort();
  const link = await forwardTcp(relayPort, natsUrl);
  const wmConfig = env.config('worker-manager', { urls, port: ports['worker-manager'], natsUrl: `nats://127.0.0.1:${relayPort}`, ...wmOverrides });
  const wm = await startWorkerManager(wmConfig);
  const worker = await startWorker({ natsUrl: schedConfig.natsUrl, natsPrefix: env.natsPrefix, schedulerUrl: sched.url, labels, logLevel: 'silent' });
  await workerOnline(sched.url, worker.id, 15_000);
  return { env, sched, wm, wmConfig, worker, link, relayPort, natsUrl, scratch };
}

/** Stops what `startRelayedStack` started (as the test left it: its current worker-manager and relay). */
export async function stopRelayedStack(s: Partial<RelayedStack>): Promise<void> {
  await s.worker?.stop({ force: true });
  await s.wm?.stop();
  await s.sched?.stop();
  await s.link?.close();
  await s.env?.cleanup();
  if (s.scratch) rmSync(s.scratch, { recursive: true, force: true });
}

/** How many times the job writing a line to `marker` ran. */
export const runs = (marker: string) => (existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean).length : 0);
