// A command's action is loaded when that command runs, so `hodei --help`, `--version` and every
// other command do not pay for its imports (the zod schemas of @hodei/types, YAML, the HTTP client).
import type { Command } from 'commander';

// commander hands each action its arguments, its options and the command
type Action = (...args: any[]) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any

export function lazy<M extends Record<K, Action>, K extends string>(load: () => Promise<M>, name: K): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    await (await load())[name](...(args as [...unknown[], Command]));
  };
}
