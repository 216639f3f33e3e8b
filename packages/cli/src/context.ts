// What every command action needs, built from the global flags.
import { constants as osConstants } from 'node:os';
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

/**
 * The process exit code for an execution's end, as a shell reports a local command's: its own code;
 * 128+N when signal N killed it (137 SIGKILL, 143 SIGTERM); 124 timed out, as coreutils `timeout`;
 * 130 cancelled, as Ctrl-C; 1 lost, or failed with nothing to tell.
 */
export function exitCodeFor(status: string, exitCode: number | null | undefined, signal?: string | null): number {
  switch (status) {
    case 'completed':
      return exitCode ?? 0;
    case 'timed_out':
      return 124;
    case 'cancelled':
      return 130;
    case 'failed': {
      if (exitCode !== null && exitCode !== undefined && exitCode !== 0) return exitCode & 0xff || 1;
      const number = signal ? osConstants.signals[signal as NodeJS.Signals] : undefined;
      return number ? 128 + number : 1;
    }
    default:
      return 1;
  }
}

/** An execution's end in a field: its code, `signal SIGKILL (exit 137)` (what hodei exits with), or `-`. */
export function exitField(status: string, exitCode: number | null | undefined, signal?: string | null): string {
  if (exitCode !== null && exitCode !== undefined) return String(exitCode);
  return signal ? `signal ${signal} (exit ${exitCodeFor(status, exitCode, signal)})` : '-';
}

/** The same after a status, in parentheses: ` (exit 3)`, ` (signal SIGKILL, exit 137)`, or nothing. */
export function exitNote(status: string, exitCode: number | null | undefined, signal?: string | null): string {
  if (exitCode !== null && exitCode !== undefined) return ` (exit ${exitCode})`;
  return signal ? ` (signal ${signal}, exit ${exitCodeFor(status, exitCode, signal)})` : '';
}
