// `hodei run`: create a job, execute it, stream its output live and exit with its exit code.
// Options and help only: what the command does is in actions/run.ts, loaded when it runs.
import { Command } from 'commander';
import {
  collectList, collectPair, parseDurationSeconds, parseInteger, parsePositiveNumber, parsePriority, parseSizeBytes,
} from '../parse.js';
import { lazy } from '../lazy.js';

const load = () => import('../actions/run.js');

/** How `run` (and `logs -f`, `jobs show --watch`, followed to the end) exits. */
export const RUN_EXIT_CODES = `Exit codes:
  0..255         the job's own exit code (0: it completed)
  128+N          signal N killed the job (137 SIGKILL, 143 SIGTERM)
  124            the job timed out
  130            the job was cancelled
  1              the job was lost, or failed with no code or signal; or a request was refused
  2              a usage error, or a service that does not answer
  143, 129, 141  SIGTERM, SIGHUP or a closed output pipe ended hodei (the job is cancelled)`;

export function registerRun(program: Command): void {
  program
    .command('run')
    .summary('run a command or a script as a job and stream its output')
    .description(
      'Create a job, execute it and follow its output live. Lines go to stdout ([OUT]) and stderr ([ERR]);\n' +
        "a summary ends on stderr and hodei exits as a shell reports a local command (Exit codes below).\n" +
        'Ctrl-C once cancels the execution and waits for the summary; twice detaches.',
    )
    .argument('[command...]', "the command to run, instead of --command; every word after the command's name is its own, options too (each word is quoted for /bin/sh)")
    .passThroughOptions()
    .option('-f, --file <job.yaml>', 'a job file (the job definition in YAML); flags override its fields')
    .option('-n, --name <name>', 'job name (default: from the command or script)')
    .option('-c, --command <command>', 'command line, run with /bin/sh -c')
    .option('-s, --script <file>', 'script file to run (its shebang picks the interpreter; - reads stdin)')
    .option('--arg <arg>', 'argument passed to the script or command (repeatable)', collectList)
    .option('-e, --env <KEY=VALUE>', 'environment variable (repeatable)', collectPair)
    .option('--cpu <cores>', 'CPU cores requested, e.g. 2 or 0.5', parsePositiveNumber)
    .option('--memory <size>', 'memory requested, e.g. 512MB, 4GiB', parseSizeBytes)
    .option('--timeout <duration>', 'kill the job after this long, e.g. 90s, 30m, 1h30m (whole seconds, rounded up)', parseDurationSeconds)
    .option('-p, --priority <priority>', 'low|normal|high|critical or 1..15 (higher first)', parsePriority)
    .option('-l, --label <key=value>', 'worker label the job needs (repeatable)', collectPair)
    .option('-t, --tag <tag>', 'tag (repeatable)', collectList)
    .option('--retries <n>', 'new attempts when the job fails or its worker is lost (run follows them)', parseInteger(0, 100))
    .option('--workdir <dir>', 'working directory on the worker, an absolute path')
    .option('--description <text>', 'job description')
    .option('-d, --detach', 'print the job and execution ids and exit at once')
    .option('--no-timestamps', 'no timestamps in front of lines')
    .option('--raw', 'print only the lines themselves (no timestamp, no [OUT]/[ERR])')
    .addHelpText(
      'after',
      '\nExamples:\n  hodei run make test -j4\n  hodei run --name hello --command "echo hello; echo oops >&2"\n  hodei run --script ./build.sh --arg --fast --timeout 30m --memory 512MB\n  hodei run -f examples/jobs/long-running.yaml' +
        `\n\n${RUN_EXIT_CODES}`,
    )
    .action(lazy(load, 'run'));
}
