// `hodei pipelines …` and `hodei apply -f pipeline.yaml`.
// Options and help only: what the command does is in actions/pipelines.ts, loaded when it runs.
import { Command } from 'commander';
import { collectPair, parseInteger } from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/pipelines.js');

export function registerPipelines(program: Command): void {
  program
    .command('apply')
    .summary('create a pipeline from a YAML file, or update the one with that name')
    .requiredOption('-f, --file <pipeline.yaml>', 'pipeline file (name, description, jobs with depends_on by name)')
    .action(lazy(load, 'applyFile'));

  const pipelines = program.command('pipelines').alias('pipeline').summary('create, list, show, run, cancel, delete pipelines');

  pipelines
    .command('create')
    .summary('create a pipeline (from flags or a YAML file with inline jobs)')
    .option('-n, --name <name>', 'pipeline name')
    .option('--description <text>', 'what it is for')
    .option('-f, --file <pipeline.yaml>', 'pipeline file (sent as YAML)')
    .action(lazy(load, 'create'));

  pipelines
    .command('list')
    .alias('ls')
    .summary('pipelines, newest first')
    .option('--limit <n>', 'at most N', parseInteger(1, 1000), 50)
    .action(lazy(load, 'list'));

  pipelines
    .command('show')
    .summary('a pipeline and its jobs')
    .argument('<id>', 'pipeline id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'show'));

  pipelines
    .command('run')
    .summary('run every job of a pipeline in dependency order; --follow shows status changes and logs until it ends')
    .argument('<id>', 'pipeline id, unique prefix (4+ chars) or name')
    .option('-f, --follow', "show each job's status changes and its log lines (prefixed with the job name) until the run ends; exit 1 when it fails")
    .option('-e, --env <KEY=VALUE>', 'environment variable every job of the run receives (repeatable)', collectPair)
    .option('--no-timestamps', 'log lines without the time')
    .action(lazy(load, 'run'));

  pipelines
    .command('follow')
    .summary("follow a pipeline run: job status changes and logs until it ends (exit 0 completed, 1 failed, 130 cancelled)")
    .argument('<run-id>', 'pipeline run id')
    .option('--no-timestamps', 'log lines without the time')
    .action(lazy(load, 'follow'));

  pipelines
    .command('cancel')
    .summary('cancel a pipeline run: nothing more starts, waiting jobs are skipped, running ones are cancelled')
    .argument('<run-id>', 'pipeline run id')
    .action(lazy(load, 'cancel'));

  pipelines
    .command('runs')
    .summary('runs of a pipeline, newest first')
    .argument('<id>', 'pipeline id, unique prefix (4+ chars) or name')
    .option('--limit <n>', 'at most N', parseInteger(1, 1000), 20)
    .action(lazy(load, 'runs'));

  pipelines
    .command('delete')
    .alias('rm')
    .summary('delete a pipeline (refused while it runs)')
    .argument('<id>', 'pipeline id, unique prefix (4+ chars) or name')
    .action(lazy(load, 'remove'));
}
