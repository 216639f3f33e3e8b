// The installation a CLI test file runs against: started before its tests, stopped after them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { buildCli } from './helpers.js';
import { startStack, type Stack } from './stack.js';

export interface StackFixture {
  /** The running installation (from the first test on). */
  readonly stack: Stack;
  /** Environment for a hodei subprocess pointed at it (filled before the first test). */
  readonly env: Record<string, string>;
  /** A scratch directory of the file's own, removed after its tests. */
  readonly dir: string;
}

export function useStack(): StackFixture {
  let stack: Stack | undefined;
  const env: Record<string, string> = {};
  const dir = mkdtempSync(join(tmpdir(), 'hodei-cli-'));
  beforeAll(async () => {
    buildCli();
    stack = await startStack();
    Object.assign(env, stack.cliEnv);
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get stack() {
      if (!stack) throw new Error('the stack starts in beforeAll');
      return stack;
    },
    env,
    dir,
  };
}
