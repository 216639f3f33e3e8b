// Every command of `hodei`, with the options they all share.
import { Command, Option } from 'commander';
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

export function buildProgram(): Command {
  const program = new Command('hodei')
    .description('Hodei Jobs from the terminal: run jobs and watch them live, manage pipelines, schedules and workers')
    .version(VERSION, '-V, --version')
    .option('--url <url>', 'one host for all services (default ports 8080/8081/8082) [env HODEI_URL]')
    .option('--orchestrator-url <url>', 'orchestrator URL [env HODEI_ORCHESTRATOR_URL]')
    .option('--scheduler-url <url>', 'scheduler URL [env HODEI_SCHEDULER_URL]')
    .option('--worker-manager-url <url>', 'worker-manager URL [env HODEI_WORKER_MANAGER_URL]')
    .addOption(new Option('--token <token>', 'API token [env HODEI_API_TOKEN]'))
    .option('--json', 'machine-readable JSON output')
    .option('--no-color', 'no colours (also NO_COLOR=1)')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true });
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
  return program;
}
