// Shared by the scheduler's tests.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectBus, createLogger, createTestEnv, pidGone, serviceAddresses, type Bus, type RunningService, type TestEnv } from '@hodei/platform';
import type { AgentProcess } from '../../../packages/worker/test/harness.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startScheduler } from '../src/service.js';

/** Polls `fn` until `ok` holds for its value; throws naming the condition and the last value after `ms`. */
export async function until<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${ok.toString()}; last value: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A scheduler and a worker-manager on a throwaway database and NATS prefix (heartbeats every
 *  200 ms), a bus of the test's own, and a scratch folder, for tests that run worker agents. */
export interface AgentStack {
  env: TestEnv;
  sched: RunningService;
  wm: RunningService;
  bus: Bus;
  scratch: string;
}

export async function startAgentStack(name: string, heartbeatTimeoutMs: number): Promise<AgentStack> {
  const env = createTestEnv();
  const scratch = mkdtempSync(join(tmpdir(), `hodei-${name}-`));
  const { ports, urls } = await serviceAddresses();
  const common = { urls, heartbeatIntervalMs: 200, heartbeatTimeoutMs };
  const sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  const wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
  const bus = await connectBus(env.config('scheduler').natsUrl, env.natsPrefix, `${name}-test`, createLogger('test', 'silent'));
  return { env, sched, wm, bus, scratch };
}

/** Kills the agents (stopped ones too) and the job whose pid a test wrote to `<scratch>/pid`,
 *  then stops the services and removes the database, the streams and the scratch folder. */
export async function stopAgentStack(stack: AgentStack | undefined, agents: AgentProcess[]): Promise<void> {
  for (const a of agents) {
    a.proc.kill('SIGCONT');
    a.proc.kill('SIGKILL');
  }
  if (!stack) return;
  const f = join(stack.scratch, 'pid');
  if (existsSync(f)) {
    const pid = Number(readFileSync(f, 'utf8').trim());
    if (pid && !pidGone(pid)) process.kill(pid, 'SIGKILL');
  }
  await stack.bus.nc.close();
  await stack.wm.stop();
  await stack.sched.stop();
  await stack.env.cleanup();
  rmSync(stack.scratch, { recursive: true, force: true });
}
