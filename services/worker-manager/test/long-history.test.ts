// A long finished log read back (the SSE history, the logs API pages): each read must cost about
// the lines it returns, not a sort of every line after it. Statistics of a new execution's lines
// are stale until an ANALYZE (never here: this database was not analyzed), and with them
// PostgreSQL read and sorted all the remaining lines for each page: 1,000,000 lines took 95 s.
import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { finishedWithStoredLines } from './helpers.js';

const N = 300_000;
let env: TestEnv;
let svc: RunningService;
let id: string;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startWorkerManager(env.config('worker-manager'));
  id = await finishedWithStoredLines(svc, N, (n) => (n % 1000 === 0 ? `mark ${n}` : `line ${n}`));
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

/** Rows of log_lines PostgreSQL has read so far, once the backends' counts stopped moving (they
 *  report them a moment after each query). */
async function rowsRead(): Promise<number> {
  const read = async () =>
    Number((await svc.ctx.db.query<{ n: string }>("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n FROM pg_stat_user_tables WHERE relname = 'log_lines'")).rows[0]!.n);
  let before = await read();
  for (;;) {
    await new Promise((r) => setTimeout(r, 1500));
    const now = await read();
    if (now === before) return now;
    before = now;
  }
}

/** Reads a whole response body, counting the lines that start with `prefix`. */
async function countLines(res: Response, prefix: string): Promise<{ count: number; last: string }> {
  const decoder = new TextDecoder();
  let rest = '';
  let count = 0;
  let last = '';
  for await (const chunk of res.body!) {
    const parts = (rest + decoder.decode(chunk, { stream: true })).split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      if (p.startsWith(prefix)) {
        count++;
        last = p;
      }
    }
  }
  return { count, last };
}

it('replays 300,000 stored lines over SSE, every one, then completed, reading each line about once', async () => {
  const before = await rowsRead();
  const res = await fetch(`${svc.url}/api/v1/executions/${id}/logs/stream`);
  const { count, last } = await countLines(res, 'id: ');
  expect(count).toBe(N);
  expect(last).toBe(`id: ${N}`);
  // each line read about once, where a sort of every line after each page read 70 times as many
  expect((await rowsRead()) - before).toBeLessThan(4 * N);
}, 120_000);

it('pages through 300,000 stored lines, greps them and takes a tail, reading each line about once', async () => {
  const before = await rowsRead();
  let since = 0;
  let total = 0;
  while (since < N) {
    const r = (await (await fetch(`${svc.url}/api/v1/executions/${id}/logs?since_seq=${since}&limit=100000`)).json()) as { lines: LogLine[]; next_seq: number };
    expect(r.lines[0]?.seq).toBe(since + 1);
    total += r.lines.length;
    since = r.next_seq;
  }
  expect(total).toBe(N);
  const marks = (await (await fetch(`${svc.url}/api/v1/executions/${id}/logs?grep=mark`)).json()) as { lines: LogLine[] };
  expect(marks.lines.map((l) => l.seq)).toEqual(Array.from({ length: N / 1000 }, (_, i) => (i + 1) * 1000));
  const tail = await (await fetch(`${svc.url}/api/v1/executions/${id}/logs?tail=2&grep=mark`, { headers: { accept: 'text/plain' } })).text();
  expect(tail).toBe(`mark ${N - 1000}\nmark ${N}\n`);
  expect((await rowsRead()) - before).toBeLessThan(4 * N);
}, 120_000);
