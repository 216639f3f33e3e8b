// `hodei worker`: run a worker agent in this process, against a remote installation.
// Options and help only: what the command does is in actions/worker.ts, loaded when it runs.
import { Command } from 'commander';
import { collectPair, parseInteger, parsePositiveNumber, parseSizeBytes } from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/worker.js');

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .summary('run a worker agent on this host')
    .option('--nats <url>', 'NATS server of the installation [env NATS_URL]')
    .option('--scheduler <url>', 'scheduler URL to register with [env HODEI_SCHEDULER_URL]')
    .option('--prefix <prefix>', 'NATS subject prefix of the installation [env HODEI_NATS_PREFIX]')
    .option('-n, --name <name>', 'worker name (default: host name and id)')
    .option('--slots <n>', 'executions it runs at once', parseInteger(1, 1024))
    .option('--cpu <cores>', 'CPU cores it offers', parsePositiveNumber)
    .option('--memory <size>', 'memory it offers, e.g. 8GiB', parseSizeBytes)
    .option('-l, --label <key=value>', 'label jobs can select (repeatable)', collectPair)
    .action(lazy(load, 'worker'));
}
