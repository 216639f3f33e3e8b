// The orchestrator with the real scheduler and worker-manager and a worker process of 4 slots, on a
// database and NATS prefix of its own: the set-up of the tests that run jobs end to end.
import { createTestEnv, serviceAddresses, workerOnline, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startOrchestrator } from '../src/service.js';
import { call } from './helpers.js';

type Svc = 'orchestrator' | 'scheduler' | 'worker-manager';

export interface RealStack {
  env: TestEnv;
  ports: Record<Svc, number>;
  urls: Record<Svc, string>;
  orchestrator: RunningService;
  scheduler: RunningService;
  workerManager: RunningService;
  /** The worker started through worker-manager (none with `worker: false`). */
  workerId?: string;
  /** What each service was started with, to start it again (a restart). */
  configs: Record<'orchestrator' | 'worker-manager', Config>;
}

export interface RealStackOptions {
  /** The address worker-manager is given for the orchestrator (a stand-in in front of it). */
  orchestratorFor?: (url: string) => Promise<string>;
  /** The NATS address worker-manager is given (a link in front of NATS that a test cuts). */
  workerManagerNatsFor?: (url: string) => Promise<string>;
  /** false: no worker started through worker-manager (the test runs its own agent). */
  worker?: boolean;
}

/** `workerName`: the name of the worker started through worker-manager. */
export async function startRealStack(workerName: string, opts: RealStackOptions = {}): Promise<RealStack> {
  const env = createTestEnv();
  const started: Partial<RealStack> = { env };
  try {
    const { ports, urls } = await serviceAddresses();
    const orchestratorConfig = env.config('orchestrator', { urls, port: ports.orchestrator });
    const orchestrator = (started.orchestrator = await startOrchestrator(orchestratorConfig));
    const forWorkerManager = { ...urls, orchestrator: opts.orchestratorFor ? await opts.orchestratorFor(orchestrator.url) : orchestrator.url };
    const scheduler = (started.scheduler = await startScheduler(env.config('scheduler', { urls, port: ports.scheduler })));
    const wmConfig = env.config('worker-manager', { urls: forWorkerManager, port: ports['worker-manager'], killGraceMs: 1000 });
    if (opts.workerManagerNatsFor) wmConfig.natsUrl = await opts.workerManagerNatsFor(wmConfig.natsUrl);
    const workerManager = (started.workerManager = await startWorkerManager(wmConfig));
    const configs = { orchestrator: orchestratorConfig, 'worker-manager': wmConfig };
    if (opts.worker === false) return { env, ports, urls, orchestrator, scheduler, workerManager, configs };
    const w = await call(workerManager.url, 'POST', '/api/v1/workers', { type: 'shell', name: workerName, capacity: { slots: 4, cpu_cores: 4, memory_bytes: 4 * 1024 ** 3 } });
    if (w.status !== 201) throw new Error(`starting the worker answered ${w.status}: ${JSON.stringify(w.body)}`);
    started.workerId = w.body.id as string;
    await workerOnline(scheduler.url, started.workerId, 30_000);
    return { env, ports, urls, orchestrator, scheduler, workerManager, workerId: started.workerId, configs };
  } catch (err) {
    await stopRealStack(started);
    throw err;
  }
}

/** Force-stops the worker, stops the services and drops the database and streams (whatever of them there is). */
export async function stopRealStack(s: Partial<Omit<RealStack, 'ports' | 'urls'>>): Promise<void> {
  if (s.workerId && s.workerManager) await call(s.workerManager.url, 'DELETE', `/api/v1/workers/${s.workerId}?force=true`).catch(() => undefined);
  await s.workerManager?.stop();
  await s.orchestrator?.stop();
  await s.scheduler?.stop();
  await s.env?.cleanup();
}
