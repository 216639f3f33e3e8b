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
    // the 50 MB it could not write were held in memory: over 150 MB before
    expect(rss, `execution ${execution.id}`).toBeLessThan(100 * 1024 * 1024);
  }, 240_000);
});
