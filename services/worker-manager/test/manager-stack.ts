// A scheduler and a worker-manager pointed at it, for tests that restart worker-manager or run real workers.
import type { Config, RunningService, TestEnv } from '@hodei/platform';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../src/service.js';

/** Heartbeats every 300 ms, a 500 ms kill grace; `wmConfig` starts worker-manager again. */
export async function startSchedulerAndManager(env: TestEnv): Promise<{ sched: RunningService; wm: RunningService; wmConfig: Config }> {
  const sched = await startScheduler(env.config('scheduler', { heartbeatIntervalMs: 300 }));
  const wmConfig = env.config('worker-manager', { heartbeatIntervalMs: 300, killGraceMs: 500, urls: { ...env.config('worker-manager').urls, scheduler: sched.url } });
  return { sched, wm: await startWorkerManager(wmConfig), wmConfig };
}
