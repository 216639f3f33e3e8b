// The orchestrator with the real scheduler and worker-manager and a worker process of 4 slots, on a
// database and NATS prefix of its own: the set-up of the tests that run jobs end to end.
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
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
  workerId: string;
}

/** `orchestratorFor`: the address worker-manager is given for the orchestrator (a stand-in in front of it). */
export async function startRealStack(workerName: string, orchestratorFor: (url: string) => Promise<string> = async (url) => url): Promise<RealStack> {
  const env = createTestEnv();
  const started: Partial<RealStack> = { env };
  try {
    const { ports, urls } = await serviceAddresses();
    const orchestrator = (started.orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator })));
    const forWorkerManager = { ...urls, orchestrator: await orchestratorFor(orchestrator.url) };
    const scheduler = (started.scheduler = await startScheduler(env.config('scheduler', { urls, port: ports.scheduler })));
    const workerManager = (started.workerManager = await startWorkerManager(
      env.config('worker-manager', { urls: forWorkerManager, port: ports['worker-manager'], killGraceMs: 1000 }),
    ));
    const w = await call(workerManager.url, 'POST', '/api/v1/workers', { type: 'shell', name: workerName, capacity: { slots: 4, cpu_cores: 4, memory_bytes: 4 * 1024 ** 3 } });
    if (w.status !== 201) throw new Error(`starting the worker answered ${w.status}: ${JSON.stringify(w.body)}`);
    started.workerId = w.body.id as string;
    await workerOnline(scheduler.url, started.workerId, 30_000);
    return { env, ports, urls, orchestrator, scheduler, workerManager, workerId: started.workerId };
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
