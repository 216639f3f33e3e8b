// `hodei worker`: run a worker agent in this process, against a remote installation.
import { hostname } from 'node:os';
import { Command } from 'commander';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { collectPair, parseInteger, parsePositiveNumber, parseSizeBytes } from '../parse.js';

interface WorkerModule {
  startWorker: (opts: Record<string, unknown>) => Promise<{ id: string; stop: (o: { force: boolean }) => Promise<void> }>;
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .summary('run a worker agent on this host')
    .option('--nats <url>', 'NATS server of the installation [env NATS_URL]')
    .option('--scheduler <url>', 'scheduler URL to register with [env HODEI_SCHEDULER_URL]')
    .option('--prefix <prefix>', 'NATS subject prefix of the installation [env HODEI_NATS_PREFIX]')
    .option('-n, --name <name>', 'worker name', hostname())
    .option('--slots <n>', 'executions it runs at once', parseInteger(1, 1024))
    .option('--cpu <cores>', 'CPU cores it offers', parsePositiveNumber)
    .option('--memory <size>', 'memory it offers, e.g. 8GiB', parseSizeBytes)
    .option('-l, --label <key=value>', 'label jobs can select (repeatable)', collectPair)
    .action(async (f: { nats?: string; scheduler?: string; prefix?: string; name: string; slots?: number; cpu?: number; memory?: number; label?: Record<string, string> }, cmd: Command) => {
      const { config, out } = context(cmd);
      await runWorkerAgent(config, out, f);
    });
}

async function runWorkerAgent(
  config: ReturnType<typeof context>['config'],
  out: ReturnType<typeof context>['out'],
  f: { nats?: string; scheduler?: string; prefix?: string; name: string; slots?: number; cpu?: number; memory?: number; label?: Record<string, string> },
): Promise<void> {
  const specifier = '@hodei/worker';
  const { startWorker } = (await import(specifier).catch((err: Error) => {
    throw new CliError(`the worker agent (@hodei/worker) is not available: ${err.message}`);
  })) as WorkerModule;
  const capacity: Record<string, number> = {};
  if (f.slots !== undefined) capacity.slots = f.slots;
  if (f.cpu !== undefined) capacity.cpu_cores = f.cpu;
  if (f.memory !== undefined) capacity.memory_bytes = f.memory;
  const worker = await startWorker({
    natsUrl: f.nats ?? config.env.NATS_URL ?? 'nats://127.0.0.1:4222',
    natsPrefix: f.prefix ?? config.env.HODEI_NATS_PREFIX ?? 'hodei',
    schedulerUrl: f.scheduler ?? config.urls.scheduler,
    apiToken: config.token,
    name: f.name,
    labels: f.label ?? {},
    capacity,
  });
  out.note(`worker ${worker.id} running (Ctrl-C to drain and stop)`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (force: boolean) => {
      if (stopping && !force) return;
      stopping = true;
      out.note(force ? 'stopping now' : 'draining: waiting for running executions (Ctrl-C again to stop now)');
      void worker.stop({ force }).then(resolve, (err: Error) => {
        out.note(`hodei: worker stop failed: ${err.message}`);
        resolve();
      });
    };
    let signals = 0;
    process.on('SIGINT', () => stop(++signals > 1));
    process.on('SIGTERM', () => stop(false));
  });
}
