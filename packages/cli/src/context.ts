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

/**
 * The program's options as given anywhere from `hodei` to this command (`hodei --json jobs list`,
 * `hodei jobs list --json`); given twice, the one nearer the command wins.
 */
export function globalFlags(cmd: Command): GlobalFlags {
  const chain: Command[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) chain.unshift(c);
  const root = chain[0] as Command;
  const flags: Record<string, unknown> = root.opts();
  for (const c of chain.slice(1))
    for (const option of root.options) {
      const key = option.attributeName();
      if (c.getOptionValueSource(key) === 'cli') flags[key] = c.getOptionValue(key);
    }
  return flags as GlobalFlags;
}

export function context(cmd: Command): Ctx {
  const config = loadCliConfig(globalFlags(cmd));
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
