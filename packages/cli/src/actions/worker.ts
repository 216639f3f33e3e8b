// `hodei worker`: run a worker agent in this process, against a remote installation.
import type { Command } from 'commander';
import { createWorkerMetrics, resolveWorkerConfig, serveMetrics, startWorker, type WorkerHandle, type WorkerMetrics } from '@hodei/worker';
import { createLogger } from '@hodei/platform';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { outputOnlyALog } from '../output.js';

async function runWorkerAgent(
  config: ReturnType<typeof context>['config'],
  out: ReturnType<typeof context>['out'],
  f: { nats?: string; scheduler?: string; prefix?: string; name?: string; slots?: number; cpu?: number; memory?: number; label?: Record<string, string> },
): Promise<void> {
  // Flags become the agent's own variables, so its config applies the defaults for what is not given.
  const env: Record<string, string | undefined> = { ...config.env };
  if (f.nats) env.NATS_URL = f.nats;
  if (f.prefix) env.HODEI_NATS_PREFIX = f.prefix;
  env.HODEI_SCHEDULER_URL = f.scheduler ?? config.urls.scheduler;
  if (config.token) env.HODEI_API_TOKEN = config.token;
  if (f.slots !== undefined) env.HODEI_WORKER_SLOTS = String(f.slots);
  if (f.cpu !== undefined) env.HODEI_WORKER_CPU_CORES = String(f.cpu);
  if (f.memory !== undefined) env.HODEI_WORKER_MEMORY_BYTES = String(f.memory);
  outputOnlyALog();
  const options = { env, name: f.name, ...(f.label ? { labels: f.label } : {}) };
  let worker: WorkerHandle | undefined;
  try {
    // HODEI_WORKER_METRICS_PORT: /metrics as the standalone agent (packages/worker/src/main.ts) serves it
    const { metricsPort, metricsHost, capacity, logLevel } = resolveWorkerConfig(options);
    let metrics: WorkerMetrics | undefined;
    if (metricsPort !== undefined) {
      metrics = createWorkerMetrics({ running: () => worker?.running().length ?? 0, slots: capacity.slots });
      await serveMetrics(metrics.registry, metricsPort, metricsHost, createLogger('worker', logLevel));
    }
    worker = await startWorker({ ...options, metrics });
  } catch (err) {
    throw new CliError(`the worker could not start: ${(err as Error).message}`);
  }
  out.note(`worker ${worker.id} (${worker.config.name}) running with ${worker.config.capacity.slots} slots against ${worker.config.natsUrl}; Ctrl-C drains and stops it`);
  let signals = 0;
  const onSignal = () => {
    signals++;
    if (signals === 1) {
      out.note('draining: running executions finish first (Ctrl-C again to kill them and stop now)');
      void worker.stop({ force: false });
    } else {
      out.note('stopping now');
      void worker.stop({ force: true });
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await worker.done;
  const failure = worker.failure();
  if (failure) throw new CliError(failure);
}

export const worker = async (f: { nats?: string; scheduler?: string; prefix?: string; name?: string; slots?: number; cpu?: number; memory?: number; label?: Record<string, string> }, cmd: Command) => {
  const { config, out } = context(cmd);
  await runWorkerAgent(config, out, f);
};
