// A regular-expression grep runs in PostgreSQL, where some patterns cost a fraction of a millisecond
// a line (nested counted repeats): on a long log one request held a backend for a minute or more.
// Its search now has HODEI_LOG_GREP_TIMEOUT_MS of database time, then answers 422 naming grep.
import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { finishedWithStoredLines } from './helpers.js';

const TIMEOUT_MS = 300;
/** About 0.3 ms a line of 40 characters in PostgreSQL 15: about 6 s for this log without a bound. */
const COSTLY = '(.{1,60}){1,60}x';
let env: TestEnv;
let svc: RunningService;
let id: string;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startWorkerManager(env.config('worker-manager', { logGrepTimeoutMs: TIMEOUT_MS }));
  id = await finishedWithStoredLines(svc, 20_000, (n) => `${'a'.repeat(34)} ${n}`);
}, 30_000);

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

const grep = (pattern: string, extra = '') =>
  fetch(`${svc.url}/api/v1/executions/${id}/logs?grep_regex=true&grep=${encodeURIComponent(pattern)}${extra}`);

it('answers 422 naming grep when a regex search takes longer than its time, and leaves no query running', async () => {
  const started = performance.now();
  const res = await grep(COSTLY);
  const elapsed = performance.now() - started;
  expect(res.status).toBe(422);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = (await res.json()) as { detail: string; errors: { path: string; message: string }[] };
  expect(body.errors).toEqual([{ path: 'grep', message: expect.stringContaining(`longer than ${TIMEOUT_MS} ms`) }]);
  expect(body.detail).toMatch(/^grep: /);
  expect(elapsed).toBeLessThan(TIMEOUT_MS + 1500);
  const running = await svc.ctx.db.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%line ~ %' AND pid <> pg_backend_pid()");
  expect(running.rowCount).toBe(0);
});

it('still answers a cheap regex over the same lines, and the costly one over a few', async () => {
  const cheap = await grep('^a+ 1999[0-9]$');
  expect(cheap.status).toBe(200);
  expect(((await cheap.json()) as { lines: unknown[] }).lines).toHaveLength(10);
  const few = await grep(COSTLY, '&since_seq=19990');
  expect(few.status).toBe(200);
  expect(((await few.json()) as { lines: unknown[] }).lines).toHaveLength(0);
});
