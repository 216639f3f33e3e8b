// What every command action needs, built from the global flags.
import type { Command } from 'commander';
import { loadCliConfig, type CliConfig, type GlobalFlags } from './config.js';
import { HodeiClient } from './http.js';
import { Output } from './output.js';

export interface Ctx {
  config: CliConfig;
  client: HodeiClient;
  out: Output;
}

export function context(cmd: Command): Ctx {
  const config = loadCliConfig(cmd.optsWithGlobals<GlobalFlags>());
  return { config, client: new HodeiClient(config), out: new Output(config) };
}

/** The process exit code for an execution's final status. */
export function exitCodeFor(status: string, exitCode: number | null | undefined): number {
  switch (status) {
    case 'completed':
      return exitCode ?? 0;
    case 'timed_out':
      return 124;
    case 'cancelled':
      return 130;
    case 'failed':
      return exitCode !== null && exitCode !== undefined && exitCode !== 0 ? exitCode & 0xff || 1 : 1;
    default:
      return 1;
  }
}
