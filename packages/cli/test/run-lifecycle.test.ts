// How `hodei run` ends: retries followed to the last attempt, a signal's end named in the summary.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, hodei, hodeiDone } from './helpers.js';
import { startStack, type Stack } from './stack.js';

let stack: Stack;
let env: Record<string, string>;
let dir: string;

beforeAll(async () => {
  buildCli();
  stack = await startStack();
  env = stack.cliEnv;
  dir = await mkdtemp(join(tmpdir(), 'hodei-cli-lifecycle-'));
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const executionOf = (stderr: string) => /^execution\s+([0-9a-f-]{36})$/m.exec(stderr)?.[1];

describe('hodei run: how it ends', () => {
  it('follows the retries of a failing job and exits with the last attempt\'s code', async () => {
    const marker = join(dir, 'second-attempt');
    const file = join(dir, 'flaky.yaml');
    await writeFile(file, `name: flaky\nretry_backoff_seconds: 1\ncommand: 'echo try; [ -f ${marker} ] && exit 0; touch ${marker}; exit 3'\n`);
    const r = await hodeiDone(['run', '-f', file, '--retries', '2', '--raw'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('try\ntry\n');
    expect(r.stderr).toMatch(/^attempt 1 failed \(exit 3\); retried as execution [0-9a-f-]{36} \(attempt 2 of 3\)$/m);
    expect(r.stderr).toMatch(/^attempt\s+2 of 3$/m);
    expect(r.stderr).toMatch(/^status\s+completed$/m);
    const res = await fetch(`${stack.workerManager.url}/api/v1/executions/${executionOf(r.stderr)}`);
    expect(await res.json()).toMatchObject({ attempt: 2, status: 'completed' });

    const json = await hodeiDone(['run', '--json', '-f', file, '--retries', '1', '--command', 'echo no; exit 4'], env);
    expect(json.code).toBe(4);
    expect(JSON.parse(json.stdout)).toMatchObject({ attempt: 2, status: 'failed', exit_code: 4, line_count: 1 });
  }, 60_000);

  it('Ctrl-C while a retry waits out its back-off cancels the retry', async () => {
    const file = join(dir, 'slow-retry.yaml');
    await writeFile(file, 'name: slow-retry\nretry_backoff_seconds: 60\nmax_retries: 1\ncommand: exit 3\n');
    const run = hodei(['run', '-f', file], env);
    const note = await run.waitFor(/^attempt 1 failed .* retried as execution ([0-9a-f-]{36})/);
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    const retry = /retried as execution ([0-9a-f-]{36})/.exec(note.text)![1];
    expect(executionOf(r.stderr)).toBe(retry);
    const res = await fetch(`${stack.workerManager.url}/api/v1/executions/${retry}`);
    expect(await res.json()).toMatchObject({ status: 'cancelled' });
  }, 30_000);

  it('names the signal that killed the job, and no message that repeats the exit code', async () => {
    const r = await hodeiDone(['run', '--command', 'kill -TERM $$'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^signal\s+SIGTERM$/m);
    const ok = await hodeiDone(['run', '--command', 'exit 0'], env);
    expect(ok.code).toBe(0);
    expect(ok.stderr).not.toMatch(/^message/m);
  });
});
