// `hodei logs`: an execution's (or a job's latest execution's) output, past or live.
// Options and help only: what the command does is in actions/logs.ts, loaded when it runs.
import { Command, Option } from 'commander';
import { parseInteger } from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/logs.js');

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .summary("print an execution's output (or a job's latest execution's)")
    .argument('<id>', 'execution or job id, unique prefix (4+ chars) or job name')
    .option('-f, --follow', "keep streaming new lines until the execution ends, then exit with its code as run does (hodei run --help: Exit codes)")
    .option('--tail <n>', 'only the last N lines (0 with --follow: only new ones)', parseInteger(0, 100_000))
    .option('--since-seq <n>', 'only lines after this sequence number', parseInteger(0, Number.MAX_SAFE_INTEGER))
    .addOption(new Option('--stream <stream>', 'only one stream').choices(['stdout', 'stderr']))
    .option('--grep <pattern>', 'only lines matching this regular expression')
    .option('--no-timestamps', 'no timestamps in front of lines')
    .option('--raw', 'print only the lines themselves')
    .action(lazy(load, 'logs'));
}
