// `--raw` and `Accept: text/plain` give back the bytes a job wrote, a last line without a newline
// included: `hodei run --raw … > file` compares equal (cmp) with the job's own output.
import { describe, expect, it } from 'vitest';
import type { LogsResponse } from '@hodei/types';
import { hodeiDone } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env } = fx;

describe('raw output', () => {
  // printf's format: what the job writes, byte for byte
  const cases: Array<[string, string]> = [
    ['a\\nb', 'a\nb'],
    ['a\\n', 'a\n'],
    ['hi', 'hi'],
    ['a\\n\\nb\\r', 'a\n\nb\r'],
  ];

  it.each(cases)('printf %j: run --raw, logs --raw (stored, followed) and text/plain give the same bytes', async (format, bytes) => {
    const run = await hodeiDone(['run', '--raw', '--', 'printf', format], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(bytes); // was 'a\nb\n', 'hi\n'
    const execution = /^execution\s+([0-9a-f-]{36})$/m.exec(run.stderr)![1]!;

    expect((await hodeiDone(['logs', execution, '--raw'], env)).stdout).toBe(bytes);
    expect((await hodeiDone(['logs', execution, '-f', '--raw'], env)).stdout).toBe(bytes);
    const url = `${fx.stack.workerManager.url}/api/v1/executions/${execution}/logs`;
    expect(await (await fetch(url, { headers: { accept: 'text/plain' } })).text()).toBe(bytes);

    // JSON: only the last line is flagged, and only when it had no newline
    const json = (await (await fetch(url)).json()) as LogsResponse;
    const flagged = json.lines.filter((l) => 'no_newline' in l);
    if (bytes === '' || bytes.endsWith('\n')) expect(flagged).toEqual([]);
    else expect(flagged).toEqual([json.lines.at(-1)]);
    if (flagged.length) expect(flagged[0]!.no_newline).toBe(true);
  });

  it('flags each stream on its own: stderr ends with a newline, stdout does not', async () => {
    const run = await hodeiDone(['run', '--raw', '--', 'sh', '-c', 'printf out; echo err >&2'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('out');
    expect(run.stderr.startsWith('err\n')).toBe(true);
  });

  it('a line over 64 KiB, cut into pieces in the log, comes back whole; a short line ending in the mark stays as written', async () => {
    // 200,000 and 150,001 bytes: 4 and 3 pieces in the log, each but the last marked ' [line continues]'
    const script = "printf '%0200000d\\n' 7; echo 'short [line continues]'; printf '%0150001d' 8";
    const bytes = `${'7'.padStart(200_000, '0')}\nshort [line continues]\n${'8'.padStart(150_001, '0')}`;
    const run = await hodeiDone(['run', '--raw', '--', 'sh', '-c', script], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.length).toBe(bytes.length);
    expect(run.stdout === bytes).toBe(true); // before: each piece printed with its mark and a newline
    const execution = /^execution\s+([0-9a-f-]{36})$/m.exec(run.stderr)![1]!;
    expect((await hodeiDone(['logs', execution, '--raw'], env)).stdout === bytes).toBe(true);
    const url = `${fx.stack.workerManager.url}/api/v1/executions/${execution}/logs`;
    expect((await (await fetch(url, { headers: { accept: 'text/plain' } })).text()) === bytes).toBe(true);
    const json = (await (await fetch(`${url}?limit=100`)).json()) as LogsResponse;
    expect(json.lines.filter((l) => l.line.endsWith(' [line continues]')).length).toBe(3 + 1 + 2);
  });

  it('without --raw a line still ends the terminal line', async () => {
    const run = await hodeiDone(['run', '--', 'printf', 'hi'], env);
    expect(run.stdout).toMatch(/\[OUT\] hi\n$/);
  });
});
