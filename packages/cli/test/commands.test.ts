// The commands around `run` as a user meets them: lists paged, cancel of what is not running.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, hodeiDone } from './helpers.js';
import { startStack, type Stack } from './stack.js';

let stack: Stack;
let env: Record<string, string>;

beforeAll(async () => {
  buildCli();
  stack = await startStack();
  env = stack.cliEnv;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('hodei executions list', () => {
  it('pages with --limit and --offset, newest first, and says how many there are', async () => {
    for (let i = 1; i <= 3; i++) expect((await hodeiDone(['run', '--name', 'paged', '--', 'echo', String(i)], env)).code).toBe(0);
    const every = JSON.parse((await hodeiDone(['executions', 'list', '--json', '--limit', '1000'], env)).stdout) as { id: string; name: string }[];
    expect(every.filter((e) => e.name === 'paged')).toHaveLength(3);
    const second = await hodeiDone(['executions', 'list', '--json', '--limit', '1', '--offset', '1'], env);
    expect(second.code, second.stderr).toBe(0);
    expect((JSON.parse(second.stdout) as { id: string }[]).map((e) => e.id)).toEqual([every[1]!.id]);
    const table = await hodeiDone(['executions', 'list', '--limit', '2', '--offset', '1'], env);
    expect(table.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual([every[1]!.id, every[2]!.id]);
    expect(table.stderr).toBe(`2 of ${every.length} executions (use --limit / --offset for more)\n`);
  });
});
