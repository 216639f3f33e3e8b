// A reader slower than the job (`hodei run … | less`, a CI log shipper that stalls): hodei waits for
// it, as `cat` would, instead of holding everything it could not write yet in memory, and loses nothing.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAIN } from './helpers.js';
import { useStack } from './fixture.js';

const fx = useStack();
const { env } = fx;

const LINES = 100_000;
const WIDTH = 500;
// 100,000 lines of about 500 bytes: 50 MB of output
const JOB = `awk 'BEGIN { s = sprintf("%0${WIDTH}d", 0); for (i = 1; i <= ${LINES}; i++) print i " " s }'`;

const rssBytes = (pid: number) => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) * 1024;

async function executionOf(name: string): Promise<{ id: string; status: string } | undefined> {
  const res = await fetch(`${fx.stack.workerManager.url}/api/v1/executions?limit=20`);
  return ((await res.json()) as { id: string; name: string; status: string }[]).find((e) => e.name === name);
}

async function until<T>(what: string, get: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  for (const start = Date.now(); Date.now() - start < timeoutMs; await new Promise((r) => setTimeout(r, 200))) {
    const v = await get();
    if (v !== undefined) return v;
  }
  throw new Error(`${what}: not within ${timeoutMs} ms`);
}

describe('a slow reader', () => {
  it.each([
    ['run', (name: string) => ['run', '--raw', '--name', name, '--command', JOB]],
    ['logs -f', (id: string) => ['logs', '-f', '--raw', id]],
    ['logs', (id: string) => ['logs', '--raw', id]],
  ])('%s: memory stays flat while the reader does not read, and every line comes once it does', async (how, args) => {
    const name = `slow-reader-${how.replace(/\W/g, '')}`;
    let id = name;
    if (how !== 'run') {
      const started = await fetch(`${fx.stack.workerManager.url}/api/v1/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, command: JOB }),
      });
      expect(started.status).toBe(202);
      id = ((await started.json()) as { id: string }).id;
      if (how === 'logs') await until('the job ends', async () => ((await executionOf(name))?.status === 'completed' ? true : undefined), 120_000);
    }
    const child = spawn(process.execPath, [MAIN, ...args(id)], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    // hodei's output goes nowhere for now: the pipe fills and stays full
    child.stdout.pause();
    const execution = await until('the execution', () => executionOf(name), 20_000);
    await until('the job ends', async () => ((await executionOf(name))?.status === 'completed' ? true : undefined), 120_000);
    // what hodei holds once it had all the time it needed to read the whole log
    let rss = 0;
    for (let i = 0; i < 20; i++) {
      rss = Math.max(rss, rssBytes(child.pid!));
      await new Promise((r) => setTimeout(r, 250));
    }

    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stdout.resume();
    expect(await closed, stderr).toBe(0);
    const lines = Buffer.concat(chunks).toString().split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBe(LINES);
    expect(lines.every((l, i) => l === `${i + 1} ${'0'.repeat(WIDTH)}`)).toBe(true);
    // the 50 MB it could not write were held in memory: 170-193 MB before; 112 MB seen since, with
    // the whole suite running beside it (the garbage collector lagging)
    expect(rss, `execution ${execution.id}`).toBeLessThan(140 * 1024 * 1024);
  }, 240_000);
});

describe('run --json of a long log', () => {
  it('holds no more of it than a page, and prints it whole once the job has ended', async () => {
    const lines = 300_000;
    const child = spawn(process.execPath, [MAIN, 'run', '--json', '--name', 'json-long', '--command', `seq 1 ${lines}`], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    let rss = 0;
    const sampler = setInterval(() => {
      try {
        const now = rssBytes(child.pid!); // NaN once it has exited
        if (now > rss) rss = now;
      } catch {
        // gone
      }
    }, 100);
    const code = await new Promise((resolve) => child.on('exit', resolve));
    clearInterval(sampler);
    expect(code, stderr).toBe(0);
    const doc = JSON.parse(stdout) as { status: string; line_count: number; lines: { seq: number; line: string }[] };
    expect(stdout).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    expect(doc).toMatchObject({ status: 'completed', line_count: lines });
    expect(doc.lines.length).toBe(lines);
    expect(doc.lines.every((l, i) => l.seq === i + 1 && l.line === String(i + 1))).toBe(true);
    // every line held until the end: 1,000,000 lines took 650 MB
    expect(rss).toBeLessThan(150 * 1024 * 1024);
  }, 240_000);
});

describe('a reader that stopped reading', () => {
  /** hodei running `args`, its stdout a pipe nobody reads, once the job has printed every line. */
  async function stalled(args: string[], name: string) {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pause();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() })));
    const execution = await until('the execution', () => executionOf(name), 20_000);
    await until(
      'every line stored',
      async () => {
        const e = (await (await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${execution.id}`)).json()) as { log_lines: number };
        return e.log_lines >= 200_000 ? true : undefined;
      },
      60_000,
    );
    return { child, execution, exited, stderr: () => stderr };
  }
  const PRINT_THEN_WAIT = 'seq 1 200000; sleep 600';

  it('SIGTERM (a CI step cancelled) cancels the job and ends hodei within seconds, not when the reader reads again', async () => {
    const name = 'stalled-term';
    const { child, execution, exited, stderr } = await stalled(['run', '--name', name, '--command', PRINT_THEN_WAIT], name);
    const sent = Date.now();
    child.kill('SIGTERM');
    const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000));
    const end = await Promise.race([exited, timeout]);
    child.kill('SIGKILL');
    expect(end, stderr()).not.toBeNull(); // was still waiting for its reader
    expect(end!.code).toBe(143);
    expect(end!.at - sent).toBeLessThan(8000);
    expect((await executionOf(name))?.status, execution.id).toBe('cancelled');
  }, 120_000);

  it('a second Ctrl-C detaches within seconds; logs -f ends on Ctrl-C', async () => {
    const name = 'stalled-int';
    const { child, execution, exited } = await stalled(['run', '--name', name, '--command', PRINT_THEN_WAIT], name);
    const follower = spawn(process.execPath, [MAIN, 'logs', '-f', execution.id], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    follower.stdout.pause();
    // 130, or the death by SIGINT a shell reports as 130
    const followerExited = new Promise<number | string | null>((resolve) => follower.on('exit', (code, signal) => resolve(code ?? signal)));
    await new Promise((r) => setTimeout(r, 2000)); // the follower has filled its pipe
    const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000));
    follower.kill('SIGINT');
    child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    child.kill('SIGINT');
    const [end, followerEnd] = await Promise.all([Promise.race([exited, timeout]), Promise.race([followerExited, timeout])]);
    child.kill('SIGKILL');
    follower.kill('SIGKILL');
    expect(end?.code).toBe(130); // was still waiting for its reader
    expect([130, 'SIGINT']).toContain(followerEnd);
    await until('the cancel', async () => ((await executionOf(name))?.status === 'cancelled' ? true : undefined), 10_000);
  }, 120_000);
});

describe('stdout and stderr into one pipe (2>&1) read slower than hodei writes', () => {
  it('keeps the lines in the order the worker read them', async () => {
    // long [OUT] lines fill the pipe; each is followed by a short [ERR] line
    const job = `for i in $(seq 1 2000); do printf 'out %d %02000d\\n' $i 0; echo "err $i" >&2; done`;
    const child = spawn('/bin/sh', ['-c', 'exec "$0" "$@" 2>&1', process.execPath, MAIN, 'run', '--raw', '--name', 'one-pipe', '--command', job], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let text = '';
    // a reader a little slower than hodei: the pipe stays nearly full
    child.stdout.on('data', (c: Buffer) => {
      text += c.toString();
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 1);
    });
    expect(await new Promise((resolve) => child.on('close', resolve)), text.slice(-2000)).toBe(0);
    const execution = /^execution\s+([0-9a-f-]{36})$/m.exec(text)![1]!;
    const stored = (await (await fetch(`${fx.stack.workerManager.url}/api/v1/executions/${execution}/logs?limit=10000`)).json()) as { lines: { line: string }[] };
    expect(stored.lines).toHaveLength(4000);
    const printed = text.split('\n').slice(0, 4000);
    // was: [ERR] lines ahead of the [OUT] lines printed before them
    expect(printed.findIndex((l, i) => l !== stored.lines[i]!.line)).toBe(-1);
  }, 120_000);
});
