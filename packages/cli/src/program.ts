// Every command of `hodei`, with the options they all share.
import { Command, Help, Option } from 'commander';
import { registerRun } from './commands/run.js';
import { registerLogs } from './commands/logs.js';
import { registerJobs } from './commands/jobs.js';
import { registerPipelines } from './commands/pipelines.js';
import { registerSchedules } from './commands/schedules.js';
import { registerWorkers } from './commands/workers.js';
import { registerExecutions } from './commands/executions.js';
import { registerEvents } from './commands/events.js';
import { registerWorker } from './commands/worker.js';
import { registerStatus } from './commands/status.js';

export const VERSION = '0.1.0';

/** Options every command takes (context() reads them from wherever they were given). */
function globalOptions(): Option[] {
  return [
    new Option('--url <url>', 'one host for all services (default ports 8080/8081/8082) [env HODEI_URL]'),
    new Option('--orchestrator-url <url>', 'orchestrator URL [env HODEI_ORCHESTRATOR_URL]'),
    new Option('--scheduler-url <url>', 'scheduler URL [env HODEI_SCHEDULER_URL]'),
    new Option('--worker-manager-url <url>', 'worker-manager URL [env HODEI_WORKER_MANAGER_URL]'),
    new Option('--token <token>', 'API token [env HODEI_API_TOKEN]'),
    new Option('--json', 'machine-readable JSON output'),
    new Option('--no-color', 'no colours (also NO_COLOR=1)'),
  ];
}

/** The hint under a usage error: where that command's usage is. */
export function usageHint(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return `run '${names.join(' ')} --help' for usage`;
}

/**
 * Each command parses its own options only up to its name (positional options), so that `run`
 * can leave everything after its command word to that command. The global options are therefore
 * declared on every command too (hidden: help lists them once, as Global Options), which keeps
 * `hodei jobs list --json` working. A usage error names the help of the command it was made in.
 */
function addGlobalOptions(cmd: Command): void {
  for (const sub of cmd.commands) {
    for (const option of globalOptions()) sub.addOption(option.hideHelp());
    sub.showHelpAfterError(usageHint(sub));
    addGlobalOptions(sub);
  }
}

export function buildProgram(): Command {
  const program = new Command('hodei')
    .description('Hodei Jobs from the terminal: run jobs and watch them live, manage pipelines, schedules and workers')
    .version(VERSION, '-V, --version')
    .enablePositionalOptions()
    .showHelpAfterError("run 'hodei --help' for usage")
    // a usage error reads as every other error of hodei's: `hodei: unknown option '--bogus'`
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'hodei: ')) })
    // --help, --version and a usage error end through main's exit, which makes sure they were written
    .exitOverride()
    .configureHelp({
      sortSubcommands: false,
      showGlobalOptions: true,
      // the hidden global options alone do not make a command "[options]" in its parent's list
      subcommandTerm(cmd) {
        const term = Help.prototype.subcommandTerm.call(this, cmd);
        return cmd.options.some((o) => !o.hidden) ? term : term.replace(' [options]', '');
      },
    });
  program.addHelpText(
    'after',
    "\nExit codes: 0 success, 1 a refused request or bad input, 2 a usage error or a service that does not answer;\nrun, logs -f and jobs show --watch exit with the job's code, 128+N when signal N killed it, 124 timed out, 130 cancelled.",
  );
  for (const option of globalOptions()) program.addOption(option);
  registerRun(program);
  registerLogs(program);
  registerJobs(program);
  registerExecutions(program);
  registerPipelines(program);
  registerSchedules(program);
  registerWorkers(program);
  registerEvents(program);
  registerWorker(program);
  registerStatus(program);
  addGlobalOptions(program);
  return program;
}
