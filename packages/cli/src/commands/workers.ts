// `hodei workers …`: worker processes started and stopped by the worker-manager.
// Options and help only: what the command does is in actions/workers.ts, loaded when it runs.
import { Command, Option } from 'commander';
import { WORKER_STATUSES } from '../choices.js';
import { collectPair, parseInteger, parsePositiveNumber, parseSizeBytes } from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/workers.js');

export function registerWorkers(program: Command): void {
  const workers = program.command('workers').summary('list, start and stop worker processes');

  workers
    .command('list')
    .alias('ls')
    .summary('worker processes')
    .addOption(new Option('--status <status>', 'only this status').choices(WORKER_STATUSES))
    .option('--limit <n>', 'at most N', parseInteger(1, 1000), 50)
    .action(lazy(load, 'list'));

  workers
    .command('show')
    .summary('a worker process and what it runs')
    .argument('<id>', 'worker id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'show'));

  workers
    .command('start')
    .summary('start a worker process on the worker-manager host')
    .option('-n, --name <name>', 'worker name')
    .option('--slots <n>', 'executions it runs at once', parseInteger(1, 1024))
    .option('--cpu <cores>', 'CPU cores it offers', parsePositiveNumber)
    .option('--memory <size>', 'memory it offers, e.g. 8GiB', parseSizeBytes)
    .option('-l, --label <key=value>', 'label jobs can select (repeatable)', collectPair)
    .option('--no-wait', 'answer once the process is started, without waiting for it to register with the scheduler')
    .action(lazy(load, 'start'));

  workers
    .command('stop')
    .summary('stop a worker: drain (finish what runs) then exit; --force kills at once')
    .argument('<id>', 'worker id, unique prefix (4+ chars) or name')
    .option('--force', 'kill it and its running executions now')
    .action(lazy(load, 'stop'));
}
