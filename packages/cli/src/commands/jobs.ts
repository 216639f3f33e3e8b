// `hodei jobs …`: list, show (and watch), cancel, results, stats, cleanup.
// Options and help only: what the command does is in actions/jobs.ts, loaded when it runs.
import { Command, Option } from 'commander';
import { parseDurationSeconds, parseInteger, parsePriority } from '../parse.js';
import { EXECUTION_STATUSES } from '../choices.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/jobs.js');

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').summary('list, show, cancel jobs; results, stats, cleanup');

  jobs
    .command('list')
    .alias('ls')
    .summary('jobs, newest first')
    .addOption(new Option('--status <status>', 'only jobs in this status').choices(EXECUTION_STATUSES))
    .option('--priority <priority>', 'only this priority (low|normal|high|critical or 1..15)', parsePriority)
    .option('--tag <tag>', 'only jobs with this tag')
    .option('--name <name>', 'only jobs with this name')
    .option('--pipeline <id>', 'only jobs of this pipeline (id, unique prefix or name)')
    .option('--limit <n>', 'at most N jobs', parseInteger(1, 1000), 50)
    .option('--offset <n>', 'skip N jobs', parseInteger(0, Number.MAX_SAFE_INTEGER))
    .action(lazy(load, 'list'));

  jobs
    .command('show')
    .summary('a job: definition and last execution')
    .argument('<id>', 'job id or unique prefix (4+ chars) or name')
    .option('-w, --watch', 'keep watching and print each status change until the job finishes, then exit with its code as run does')
    .action(lazy(load, 'show'));

  jobs
    .command('cancel')
    .summary('cancel the queued and running executions of a job')
    .argument('<id>', 'job id or unique prefix (4+ chars) or name')
    .action(lazy(load, 'cancel'));

  jobs
    .command('results')
    .alias('result')
    .summary('the JSON result a job wrote to $HODEI_RESULT_FILE (latest execution)')
    .argument('<id>', 'job id or name, or execution id; or a unique prefix (4+ chars)')
    .option('-o, --output <file>', 'write the result to this file instead of stdout')
    .action(lazy(load, 'results'));

  jobs
    .command('stats')
    .summary('how many jobs, by status and priority; success rate; storage')
    .action(lazy(load, 'stats'));

  jobs
    .command('cleanup')
    .summary('delete finished jobs, old executions (with their logs) and old pipeline runs')
    .requiredOption('--older-than <duration>', 'age, e.g. 7d, 12h', parseDurationSeconds)
    .option('--dry-run', 'delete nothing; count what would be deleted')
    .option('-y, --yes', 'do not ask first (at a terminal, cleanup shows what would go and asks)')
    .action(lazy(load, 'cleanup'));
}
