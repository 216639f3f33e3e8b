// `hodei executions list|show|cancel`.
// Options and help only: what the command does is in actions/executions.ts, loaded when it runs.
import { Command, Option } from 'commander';
import { parseInteger } from '../parse.js';
import { EXECUTION_STATUSES } from '../choices.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/executions.js');

export function registerExecutions(program: Command): void {
  const ex = program.command('executions').alias('exec').summary('list, show and cancel executions');

  ex.command('list')
    .alias('ls')
    .summary('executions, newest first')
    .option('--job <id>', 'only executions of this job')
    .addOption(new Option('--status <status>', 'only this status').choices(EXECUTION_STATUSES))
    .option('--worker <id>', 'only executions on this worker (id, unique prefix or name; an agent started with hodei worker too)')
    .option('--limit <n>', 'at most N', parseInteger(1, 1000), 50)
    .option('--offset <n>', 'skip N executions', parseInteger(0, Number.MAX_SAFE_INTEGER))
    .action(lazy(load, 'list'));

  ex.command('show')
    .summary('one execution')
    .argument('<id>', 'execution id or unique prefix (4+ chars)')
    .action(lazy(load, 'show'));

  ex.command('cancel')
    .summary('cancel one queued or running execution (also one without a job, from POST /api/v1/execute)')
    .argument('<id>', 'execution id or unique prefix (4+ chars)')
    .action(lazy(load, 'cancel'));
}
