// A whole installation for CLI tests: the three services on one test database and NATS prefix,
// and one worker process started through the worker-manager. Run directly
// (`npx tsx packages/cli/test/stack.ts`) it stays up and prints the variables to point hodei at it.
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startScheduler } from '../../../services/scheduler/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';

export interface Stack {
  env: TestEnv;
  orchestrator: RunningService;
  scheduler: RunningService;
  workerManager: RunningService;
  workerId: string;
  /** Environment for a hodei subprocess pointed at this installation. */
  cliEnv: Record<string, string>;
  stop: () => Promise<void>;
}

export async function startStack(opts: { slots?: number } = {}): Promise<Stack> {
  const env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
  const scheduler = await startScheduler(env.config('scheduler', { urls, port: ports.scheduler }));
  const workerManager = await startWorkerManager(env.config('worker-manager', { urls, port: ports['worker-manager'], killGraceMs: 1000 }));

  const res = await fetch(`${workerManager.url}/api/v1/workers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'shell', name: 'cli-test', capacity: { slots: opts.slots ?? 8, cpu_cores: 8, memory_bytes: 8 * 1024 ** 3 } }),
  });
  if (res.status !== 201) throw new Error(`starting a worker answered ${res.status}: ${await res.text()}`);
  const worker = (await res.json()) as { id: string };
  await workerOnline(scheduler.url, worker.id, 20_000);

  const cliEnv = {
    HODEI_ORCHESTRATOR_URL: orchestrator.url,
    HODEI_SCHEDULER_URL: scheduler.url,
    HODEI_WORKER_MANAGER_URL: workerManager.url,
  };
  return {
    env,
    orchestrator,
    scheduler,
    workerManager,
    workerId: worker.id,
    cliEnv,
    stop: async () => {
      await fetch(`${workerManager.url}/api/v1/workers/${worker.id}?force=true`, { method: 'DELETE' }).catch(() => undefined);
      await workerManager.stop();
      await orchestrator.stop();
      await scheduler.stop();
      await env.cleanup();
    },
  };
}


if (import.meta.url === `file://${process.argv[1]}`) {
  const stack = await startStack();
  for (const [k, v] of Object.entries(stack.cliEnv)) process.stdout.write(`export ${k}=${v}\n`);
  process.stdout.write(`# worker ${stack.workerId}; Ctrl-C stops everything\n`);
  process.on('SIGINT', () => void stack.stop().then(() => process.exit(0)));
  process.on('SIGTERM', () => void stack.stop().then(() => process.exit(0)));
}
