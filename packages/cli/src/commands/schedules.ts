// `hodei schedules …`: cron (or one-off) schedules of jobs, on the scheduler.
// Options and help only: what the command does is in actions/schedules.ts, loaded when it runs.
import { Command } from 'commander';
import { parseInteger } from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/schedules.js');

export function registerSchedules(program: Command): void {
  const sch = program.command('schedules').alias('schedule').summary('cron schedules: create, list, run now, pause, resume, delete');

  sch
    .command('create')
    .summary('run a job (or pipeline) on a cron expression or once at a time')
    .option('--job <id>', 'the job to run')
    .option('--pipeline <id>', 'the pipeline to run (instead of a job)')
    .option('--cron <expr>', 'cron expression, 5 fields (or 6 with seconds), e.g. "0 3 * * *"')
    .option('--at <time>', 'run once at this ISO time (instead of --cron)')
    .option('--tz <zone>', 'IANA time zone of the cron expression', 'UTC')
    .option('-n, --name <name>', 'schedule name')
    .option('--overlap <policy>', 'forbid|allow|replace when the previous run is still going')
    .option('--paused', 'create it paused')
    .action(lazy(load, 'create'));

  sch
    .command('list')
    .alias('ls')
    .summary('schedules')
    .option('--job <id>', 'only schedules of this job')
    .option('--limit <n>', 'at most N', parseInteger(1, 1000), 50)
    .action(lazy(load, 'list'));

  sch
    .command('show')
    .summary('a schedule and its recent firings')
    .argument('<id>', 'schedule id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'show'));

  sch
    .command('run')
    .summary('fire a schedule now (paused or completed too), under its overlap policy')
    .argument('<id>', 'schedule id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'runNow'));

  for (const [name, enabled] of [['pause', false], ['resume', true]] as const) {
    sch
      .command(name)
      .summary(enabled ? 'resume a paused schedule' : 'stop a schedule from firing until resumed')
      .argument('<id>', 'schedule id, unique prefix (4+ chars) or name')
      .action(lazy(load, name));
  }

  sch
    .command('delete')
    .alias('rm')
    .summary('delete a schedule')
    .argument('<id>', 'schedule id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'remove'));
}
