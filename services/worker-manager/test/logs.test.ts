// Ingest contract: log ingestion, the logs API and the SSE streams, fed by the test the way a worker
// feeds them (log batches and status events published on JetStream); no worker runs here.
import { createTestEnv, encodeJson, type RunningService, type TestEnv } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { insertLines } from '../src/store/logs.js';
import { consumedUpTo, lines, logEvents, openSse, publishLines, publishStatus, until } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
/** The consumers' ack wait here (ACK_WAIT_MS, 5 s, unless set): a final status waits a second longer than it, 3 s, for its lines. */
const ACK_WAIT = 2000;
const get = (path: string, headers: Record<string, string> = {}) => fetch(`${svc.url}${path}`, { headers });

beforeAll(async () => {
  env = createTestEnv();
  svc = await startWorkerManager(env.config('worker-manager', { ackWaitMs: ACK_WAIT }));
});
afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

/** A queued execution no worker will take: its lines and statuses are what the test publishes. */
async function newExecution(): Promise<string> {
  const res = await fetch(`${svc.url}/api/v1/execute`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command: 'true' }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

async function stored(id: string, n: number) {
  return until(async () => {
    const e = await (await get(`/api/v1/executions/${id}/logs?limit=100000`)).json();
    return e.lines.length >= n && (e.lines as LogLine[]);
  }, 15_000, `${n} stored lines`);
}

const seqs = (ls: { seq: number }[]) => ls.map((l) => l.seq);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('ingest contract: logs API', () => {
  it('filters by since_seq, tail, stream, grep (substring and regex), limit; text/plain', async () => {
    const id = await newExecution();
    const batch: LogLine[] = [];
    for (let s = 1; s <= 20; s++) batch.push({ seq: s, stream: s % 2 ? 'stdout' : 'stderr', line: s % 5 === 0 ? `Error ${s}` : `ok ${s}`, timestamp: new Date().toISOString() });
    await publishLines(svc.ctx.bus, id, batch.slice(0, 10));
    await publishLines(svc.ctx.bus, id, batch.slice(10));
    const all = await stored(id, 20);
    expect(seqs(all)).toEqual(range(1, 20));
    expect(all[1]).toMatchObject({ seq: 2, stream: 'stderr', line: 'ok 2' });
    expect(all[0]!.timestamp).toMatch(/\.\d{3}Z$/);

    const q = async (qs: string) => (await (await get(`/api/v1/executions/${id}/logs?${qs}`)).json()) as { lines: LogLine[]; next_seq: number };
    let r = await q('since_seq=15');
    expect(seqs(r.lines)).toEqual(range(16, 20));
    expect(r.next_seq).toBe(20);
    r = await q('tail=3');
    expect(seqs(r.lines)).toEqual([18, 19, 20]);
    // tail=0 is no lines, as on the live stream (where it means: live lines only)
    r = await q('tail=0');
    expect(r.lines).toEqual([]);
    r = await q('stream=stderr&tail=2');
    expect(seqs(r.lines)).toEqual([18, 20]);
    r = await q('grep=Error');
    expect(seqs(r.lines)).toEqual([5, 10, 15, 20]);
    r = await q('grep=error');
    expect(r.lines).toEqual([]);
    r = await q(`grep=${encodeURIComponent('^Error 1[05]$')}&grep_regex=true`);
    expect(seqs(r.lines)).toEqual([10, 15]);
    r = await q('limit=4&since_seq=2');
    expect(seqs(r.lines)).toEqual([3, 4, 5, 6]);
    expect(r.next_seq).toBe(6);

    const bad = await get(`/api/v1/executions/${id}/logs?grep=${encodeURIComponent('(')}&grep_regex=true`);
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0].path).toBe('grep');
    // also where no line is tested against it: none stored yet, or none after since_seq
    for (const [exec, qs] of [[await newExecution(), ''], [id, '&since_seq=1000']] as const) {
      const none = await get(`/api/v1/executions/${exec}/logs?grep=${encodeURIComponent('(')}&grep_regex=true${qs}`);
      expect(none.status, qs).toBe(400);
      expect((await none.json()).errors[0].path, qs).toBe('grep');
    }
    // an empty or non-numeric value is a 400 naming the parameter, for each numeric one alike
    for (const qs of ['tail=', 'since_seq=', 'limit=', 'tail=abc', 'since_seq=-1', 'limit=1.5']) {
      const res = await get(`/api/v1/executions/${id}/logs?${qs}`);
      expect(res.status, qs).toBe(400);
      expect((await res.json()).errors[0].path, qs).toBe(qs.split('=')[0]);
    }
    const badStream = await get(`/api/v1/executions/${id}/logs?stream=stdin`);
    expect(badStream.status).toBe(400);
    expect((await badStream.json()).errors[0].path).toBe('stream');

    const text = await get(`/api/v1/executions/${id}/logs?since_seq=17`, { accept: 'text/plain' });
    expect(text.headers.get('content-type')).toContain('text/plain');
    expect(await text.text()).toBe('ok 18\nok 19\nError 20\n');
  });

  it('next_seq, passed back as since_seq, gives only the lines stored after the answer, whatever it held', async () => {
    const id = await newExecution();
    await insertLines(svc.ctx.db, [{ execution_id: id, lines: lines(1, 8) }]);
    const q = async (qs: string) => (await (await get(`/api/v1/executions/${id}/logs?${qs}`)).json()) as { lines: LogLine[]; next_seq: number };
    const cases: Array<[string, number[], number]> = [
      ['tail=0', [], 8],
      ['tail=2', [7, 8], 8],
      ['since_seq=20', [], 20],
      ['since_seq=8', [], 8],
      ['grep=nothing', [], 8],
      ['stream=stderr', [], 8],
      ['stream=stderr&tail=5', [], 8],
      ['grep=line%203', [3], 8],
      ['limit=3', [1, 2, 3], 3],
      ['limit=8', range(1, 8), 8],
    ];
    for (const [qs, want, next] of cases) {
      const r = await q(qs);
      expect([seqs(r.lines), r.next_seq], qs).toEqual([want, next]);
    }
    // a poller that starts with tail=0 then gets the new lines only
    const start = await q('tail=0');
    await insertLines(svc.ctx.db, [{ execution_id: id, lines: lines(9, 10) }]);
    expect(seqs((await q(`since_seq=${start.next_seq}`)).lines)).toEqual([9, 10]);
  });

  it('pages through thousands of lines: since_seq, tail and limit across pages', async () => {
    const id = await newExecution();
    await insertLines(svc.ctx.db, [{ execution_id: id, lines: lines(1, 2500) }]);
    const q = async (qs: string) => (await (await get(`/api/v1/executions/${id}/logs?${qs}`)).json()) as { lines: LogLine[]; next_seq: number };
    let r = await q('');
    expect(seqs(r.lines)).toEqual(range(1, 2500));
    expect(r.lines[2499]).toMatchObject({ seq: 2500, stream: 'stdout', line: 'line 2500' });
    r = await q('tail=2200');
    expect(seqs(r.lines)).toEqual(range(301, 2500));
    r = await q('tail=2200&limit=1500&since_seq=100');
    expect(seqs(r.lines)).toEqual(range(1001, 2500));
    r = await q('limit=1500&since_seq=100');
    expect(seqs(r.lines)).toEqual(range(101, 1600));
    expect(r.next_seq).toBe(1600);
    r = await q(`grep=${encodeURIComponent('00$')}&grep_regex=true&tail=22`);
    expect(seqs(r.lines)).toEqual(range(4, 25).map((n) => n * 100));
    const text = await (await get(`/api/v1/executions/${id}/logs?since_seq=2497`, { accept: 'text/plain' })).text();
    expect(text).toBe('line 2498\nline 2499\nline 2500\n');
  });

  it('text/plain without limit is the whole log, past the 10,000 lines a JSON page holds, its last line included', async () => {
    const id = await newExecution();
    const n = 10_005;
    const all = lines(1, n);
    all[n - 1]!.no_newline = true;
    await insertLines(svc.ctx.db, [{ execution_id: id, lines: all }]);
    const text = await (await get(`/api/v1/executions/${id}/logs`, { accept: 'text/plain' })).text();
    expect(text.split('\n').length).toBe(n);
    expect(text.endsWith(`line ${n - 1}\nline ${n}`)).toBe(true);
    expect(await (await get(`/api/v1/executions/${id}/logs?limit=2`, { accept: 'text/plain' })).text()).toBe('line 1\nline 2\n');
    expect((await (await get(`/api/v1/executions/${id}/logs`)).json()).lines).toHaveLength(10_000);
  });

  it('answers lines whose JSON is larger than a string can be (1,400 lines of 64 KiB control characters)', async () => {
    const id = await newExecution();
    const filler = '\u0001'.repeat(64 * 1024 - 10);
    for (let from = 1; from <= 1400; from += 100) {
      await insertLines(svc.ctx.db, [{ execution_id: id, lines: lines(from, from + 99, 'stdout', (n) => `${n}:${filler}`) }]);
    }
    const res = await get(`/api/v1/executions/${id}/logs`);
    expect(res.status).toBe(200);
    // each \u0001 is 6 characters of JSON: 550 MiB, read a piece at a time
    const found: number[] = [];
    let size = 0;
    let carry = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body!) {
      size += chunk.length;
      const text = carry + decoder.decode(chunk, { stream: true });
      let matched = 0;
      for (const m of text.matchAll(/"line":"(\d+):/g)) {
        found.push(Number(m[1]));
        matched = m.index + m[0].length;
      }
      carry = text.slice(Math.max(matched, text.length - 30)); // a match cut in two, and the end
    }
    expect(size).toBeGreaterThan(2 ** 29);
    expect(found).toEqual(range(1, 1400));
    expect(carry.endsWith('}],"next_seq":1400}')).toBe(true);
  }, 120_000);

  it('stores redelivered and out-of-order batches once, in seq order, and counts each line once', async () => {
    const ingested = async () => Number(/^hodei_log_lines_ingested_total\{[^}]*\} (\d+)$/m.exec(await (await get('/metrics')).text())![1]);
    const before = await ingested();
    const id = await newExecution();
    await publishLines(svc.ctx.bus, id, lines(6, 10));
    await publishLines(svc.ctx.bus, id, lines(1, 5));
    await publishLines(svc.ctx.bus, id, lines(1, 5));
    const last = await publishLines(svc.ctx.bus, id, lines(4, 8));
    const all = await stored(id, 10);
    await consumedUpTo(svc.ctx.bus, 'logs', last);
    const again = (await (await get(`/api/v1/executions/${id}/logs`)).json()).lines as LogLine[];
    expect(seqs(all)).toEqual(range(1, 10));
    expect(seqs(again)).toEqual(range(1, 10));
    expect(await ingested()).toBe(before + 10);
  });

  it('lines that keep coming are stored together, at most one statement each 10 ms', async () => {
    const db = svc.ctx.db;
    await db.query(`CREATE TABLE IF NOT EXISTS insert_statements (n bigint NOT NULL);
      CREATE OR REPLACE FUNCTION count_insert_statement() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO insert_statements VALUES (1); RETURN NULL; END $$;
      CREATE TRIGGER count_insert_statement AFTER INSERT ON worker_manager.log_lines FOR EACH STATEMENT EXECUTE FUNCTION count_insert_statement();`);
    try {
      const id = await newExecution();
      const t0 = performance.now();
      // 300 messages of one line each, one after the other, as a worker sends a job printing without pause
      for (let seq = 1; seq <= 300; seq++) await publishLines(svc.ctx.bus, id, lines(seq, seq));
      expect(seqs(await stored(id, 300))).toEqual(range(1, 300));
      const tookMs = performance.now() - t0;
      const statements = Number((await db.query('SELECT count(*) AS n FROM insert_statements')).rows[0].n);
      expect(statements).toBeLessThanOrEqual(tookMs / 10 + 5);
    } finally {
      await db.query('DROP TRIGGER count_insert_statement ON worker_manager.log_lines; DROP TABLE insert_statements');
    }
  });

  it('stores every line as written: quotes, backslashes, braces, commas, NULL, spaces, empty, non-ASCII', async () => {
    const id = await newExecution();
    const texts = ['say "hi"', 'C:\\dir\\"x"\\', '{a,b}', 'NULL', '\\N', '  padded  ', '', 'ünïcødé ✓ 日本', '"', '\\', 'a,b', '}{'];
    await publishLines(svc.ctx.bus, id, texts.map((t, i) => ({ ...lines(i + 1, i + 1)[0]!, line: t, ...(i === 5 ? { no_newline: true } : {}) })));
    const got = await stored(id, texts.length);
    expect(got.map((l) => l.line)).toEqual(texts);
    expect(got.map((l) => l.no_newline === true)).toEqual(texts.map((_, i) => i === 5));
  });

  it('a malformed batch or line costs only itself: the rest of its message is stored, and nothing is held back', async () => {
    const [a, b] = [await newExecution(), await newExecution()];
    const good = lines(1, 3);
    const badTime = { ...lines(4, 4)[0]!, timestamp: 'yesterday' };
    const message = {
      worker_id: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11',
      batches: [
        { execution_id: 'not-an-id', lines: lines(1, 2) },
        { execution_id: b, lines: [{ ...lines(1, 1)[0]!, seq: 1.5 }] },
        { execution_id: a, lines: [...good, badTime] },
        { execution_id: b, lines: lines(2, 3) },
      ],
    };
    const sent = Date.now();
    await svc.ctx.bus.js.publish(svc.ctx.bus.subjects.logs(a), encodeJson(message));
    const storedA = await stored(a, 4);
    expect(storedA.map((l) => l.line)).toEqual(['line 1', 'line 2', 'line 3', 'line 4']);
    // a time PostgreSQL cannot read is the time the line was received
    expect(Math.abs(Date.parse(storedA[3]!.timestamp) - sent)).toBeLessThan(10_000);
    expect(seqs(await stored(b, 2))).toEqual([2, 3]);
  });
});

describe('ingest contract: log stream (SSE)', () => {
  it('sends connected, history, live lines, then completed and closes', async () => {
    const id = await newExecution();
    await publishLines(svc.ctx.bus, id, lines(1, 30));
    await stored(id, 30);
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() });
    const c = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    expect(c.status).toBe(200);
    expect(c.headers.get('content-type')).toContain('text/event-stream');
    expect(c.headers.get('cache-control')).toBe('no-cache');
    expect(c.headers.get('x-accel-buffering')).toBe('no');
    await c.waitFor((e) => e.event === 'log' && e.id === '30');
    expect(c.events[0]!.event).toBe('connected');
    expect(JSON.parse(c.events[0]!.data)).toMatchObject({ execution_id: id });
    await publishLines(svc.ctx.bus, id, lines(31, 60, 'stderr'));
    await c.waitFor((e) => e.event === 'log' && e.id === '60');
    await publishLines(svc.ctx.bus, id, lines(61, 80));
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'failed', exit_code: 3, last_seq: 80, duration_ms: 1532 });
    const done = await c.waitFor((e) => e.event === 'completed');
    expect(JSON.parse(done.data)).toEqual({ status: 'failed', exit_code: 3, signal: null, message: null, duration_ms: 1532 });
    await c.ended;
    expect(seqs(logEvents(c))).toEqual(range(1, 80));
    expect(logEvents(c)[40]).toMatchObject({ seq: 41, stream: 'stderr', line: 'line 41' });
    expect(c.events.at(-1)!.event).toBe('completed');
  });

  it("completed says how the execution ended (signal, message), live and on a replay", async () => {
    const id = await newExecution();
    const live = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    await live.waitFor((e) => e.event === 'connected');
    await publishLines(svc.ctx.bus, id, lines(1, 2));
    const end = { status: 'failed', exit_code: null, signal: 'SIGTERM', message: 'killed by signal SIGTERM', duration_ms: 40 } as const;
    await publishStatus(svc.ctx.bus, { execution_id: id, ...end, last_seq: 2 });
    const done = await live.waitFor((e) => e.event === 'completed');
    expect(JSON.parse(done.data)).toEqual(end);
    const replay = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    await replay.ended;
    expect(JSON.parse(replay.events.at(-1)!.data)).toEqual(end);
  });

  it('a live line holding a NUL reads as the stored one (U+FFFD), not as a NUL', async () => {
    const id = await newExecution();
    const live = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    await live.waitFor((e) => e.event === 'connected');
    await publishLines(svc.ctx.bus, id, lines(1, 1, 'stdout', () => 'a\u0000b'));
    await live.waitFor((e) => e.event === 'log');
    expect(logEvents(live).map((l) => l.line)).toEqual(['a\uFFFDb']);
    expect((await stored(id, 1)).map((l) => l.line)).toEqual(['a\uFFFDb']);
  });

  it('waits for lines up to last_seq even when the final status arrives first', async () => {
    const id = await newExecution();
    const c = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    await c.waitFor((e) => e.event === 'connected');
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 10, duration_ms: 5 });
    await new Promise((r) => setTimeout(r, 300));
    expect(c.events.some((e) => e.event === 'completed')).toBe(false);
    await publishLines(svc.ctx.bus, id, lines(6, 10));
    await publishLines(svc.ctx.bus, id, lines(1, 5));
    await c.waitFor((e) => e.event === 'completed');
    expect(seqs(logEvents(c))).toEqual(range(1, 10));
  });

  it('a final status waits for its lines as long as they keep being stored, and gives up 3 s after the last', async () => {
    const slow = await newExecution();
    const short = await newExecution();
    const status = async (id: string) => ((await (await get(`/api/v1/executions/${id}`)).json()) as { status: string }).status;
    await publishStatus(svc.ctx.bus, { execution_id: slow, status: 'completed', exit_code: 0, last_seq: 40, duration_ms: 5 });
    await publishStatus(svc.ctx.bus, { execution_id: short, status: 'completed', exit_code: 0, last_seq: 10, duration_ms: 5 });
    await publishLines(svc.ctx.bus, short, lines(1, 9)); // line 10 never comes
    const began = Date.now();
    // 40 lines over 4.5 s, 1.5 s apart: longer than the 3 s it waits without new lines
    for (let i = 0; i < 4; i++) {
      if (i) await new Promise((r) => setTimeout(r, 1500));
      expect(await status(slow)).toBe('queued');
      await publishLines(svc.ctx.bus, slow, lines(i * 10 + 1, i * 10 + 10));
    }
    await until(async () => (await status(slow)) === 'completed', 5000, 'the slow execution to complete');
    const stored40 = ((await (await get(`/api/v1/executions/${slow}/logs`)).json()) as { lines: LogLine[] }).lines;
    expect(seqs(stored40)).toEqual(range(1, 40));
    await until(async () => (await status(short)) === 'completed', 5000, 'the short one to complete without its last line');
    expect(Date.now() - began).toBeGreaterThanOrEqual(2500);
  }, 20_000);

  it('Last-Event-ID: 50 resumes at 51; tail=N gives the last N; after the end it replays and completes at once', async () => {
    const id = await newExecution();
    await publishLines(svc.ctx.bus, id, lines(1, 100));
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 100, duration_ms: 10 });
    await stored(id, 100);
    await until(async () => (await (await get(`/api/v1/executions/${id}`)).json()).status === 'completed');

    const resumed = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`, { 'last-event-id': '50' });
    await resumed.ended;
    expect(seqs(logEvents(resumed))).toEqual(range(51, 100));
    expect(resumed.events.at(-1)!.event).toBe('completed');

    const tail = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream?tail=5`);
    await tail.ended;
    expect(seqs(logEvents(tail))).toEqual(range(96, 100));

    // since_seq and tail together as GET …/logs takes them: the last N of the lines after since_seq
    for (const [query, from] of [['since_seq=50&tail=5', 96], ['since_seq=97&tail=5', 98]] as const) {
      const both = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream?${query}`);
      await both.ended;
      expect(seqs(logEvents(both)), query).toEqual(range(from, 100));
      expect(seqs(((await (await get(`/api/v1/executions/${id}/logs?${query}`)).json()) as { lines: LogLine[] }).lines), query).toEqual(range(from, 100));
    }
    // an EventSource reconnecting to a ?tail= URL resumes after its last line: tail no longer cuts
    const resumedTail = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream?tail=5`, { 'last-event-id': '50' });
    await resumedTail.ended;
    expect(seqs(logEvents(resumedTail))).toEqual(range(51, 100));

    const replay = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`);
    await replay.ended;
    expect(seqs(logEvents(replay))).toEqual(range(1, 100));
    expect(JSON.parse(replay.events.at(-1)!.data)).toEqual({ status: 'completed', exit_code: 0, signal: null, message: null, duration_ms: 10 });

    // the largest seq there can be: nothing after it, and the stream still completes
    const last = await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`, { 'last-event-id': '2147483647' });
    await last.ended;
    expect(logEvents(last)).toEqual([]);
    expect(last.events.at(-1)!.event).toBe('completed');
    // past it, or not a plain number: a 400 naming the field, not a stream that closes without completed
    for (const [path, headers, field] of [
      ['logs/stream?since_seq=2147483648', {}, 'since_seq'],
      ['logs?since_seq=2147483648', {}, 'since_seq'],
      // the same largest tail as GET …/logs (the stream took up to 1,000,000)
      ['logs/stream?tail=100001', {}, 'tail'],
      ['logs?tail=100001', {}, 'tail'],
      ['logs/stream', { 'last-event-id': '1e99' }, 'Last-Event-ID'],
      ['logs/stream', { 'last-event-id': '2147483648' }, 'Last-Event-ID'],
    ] as const) {
      const res = await get(`/api/v1/executions/${id}/${path}`, headers);
      expect(res.status, path).toBe(400);
      expect((await res.json()).errors.map((e: { path: string }) => e.path)).toEqual([field]);
    }
  });

  it('no gap and no duplicate while history and live overlap, with redeliveries', async () => {
    const id = await newExecution();
    const total = 20_000;
    const clients = [];
    let next = 1;
    const feed = async (n: number) => {
      const to = Math.min(total, next + n - 1);
      await publishLines(svc.ctx.bus, id, lines(next, to));
      // a redelivered older batch
      if (next > 200) await publishLines(svc.ctx.bus, id, lines(next - 150, next - 100));
      next = to + 1;
    };
    while (next <= total) {
      await feed(250);
      if (next % 2500 < 250) clients.push(await openSse(`${svc.url}/api/v1/executions/${id}/logs/stream`));
    }
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: total, duration_ms: 1 });
    for (const c of clients) {
      await c.ended;
      expect(seqs(logEvents(c))).toEqual(range(1, total));
      expect(c.events.at(-1)!.event).toBe('completed');
    }
    expect(clients.length).toBeGreaterThan(3);
    const all = await stored(id, total);
    expect(seqs(all)).toEqual(range(1, total));
  });

  it('unknown execution is a 404', async () => {
    const res = await get('/api/v1/executions/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11/logs/stream');
    expect(res.status).toBe(404);
  });
});

describe('ingest contract: events streams', () => {
  it('per execution: current status, changes and progress, closes at the end; global stream sees every change', async () => {
    const all = await openSse(`${svc.url}/api/v1/events/stream`);
    await all.waitFor((e) => e.event === 'connected');
    const id = await newExecution();
    const c = await openSse(`${svc.url}/api/v1/executions/${id}/events/stream`);
    await c.waitFor((e) => e.event === 'job_event' && JSON.parse(e.data).status === 'queued');
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() });
    const progress = { current: 3, total: 10, percent: 30, message: 'step', updated_at: new Date().toISOString() };
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', progress });
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0 });
    await c.ended;
    const statuses = c.events.filter((e) => e.event === 'job_event').map((e) => JSON.parse(e.data).status);
    expect(statuses).toEqual(['queued', 'running', 'completed']);
    const p = c.events.find((e) => e.event === 'progress');
    expect(JSON.parse(p!.data)).toMatchObject({ execution_id: id, current: 3, total: 10, percent: 30 });
    const mine = await all.waitFor((e) => e.event === 'job_event' && JSON.parse(e.data).status === 'completed' && JSON.parse(e.data).execution_id === id);
    expect(JSON.parse(mine.data)).toMatchObject({ type: 'status_changed', execution_id: id, job_id: null, status: 'completed' });
    expect(all.events.filter((e) => e.event === 'job_event' && JSON.parse(e.data).execution_id === id).map((e) => JSON.parse(e.data).status)).toEqual([
      'queued', 'running', 'completed',
    ]);
    all.close();
    const exec = await (await get(`/api/v1/executions/${id}`)).json();
    expect(exec.progress).toMatchObject({ current: 3, total: 10 });
    // a client reconnecting after the end is told the same event: its time is the recorded finished_at, live and replayed
    const replay = await openSse(`${svc.url}/api/v1/executions/${id}/events/stream`);
    await replay.ended;
    const completedAt = (s: typeof c) => s.events.filter((e) => e.event === 'job_event').map((e) => JSON.parse(e.data).timestamp).at(-1);
    expect([completedAt(c), JSON.parse(mine.data).timestamp, completedAt(replay)]).toEqual([exec.finished_at, exec.finished_at, exec.finished_at]);
  });

  it('per execution: a status that arrives while the stream reads the row is sent once, not again after it', async () => {
    const id = await newExecution();
    // the stream reads the row twice (404 check, then its current status): the second read waits
    // until the test lets it go, so a status change lands in the stream's gap, as a replica's relay can
    const pool = svc.ctx.db;
    const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
    let reads = 0;
    let reached!: () => void;
    const atSecondRead = new Promise<void>((r) => (reached = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    (pool as { query: unknown }).query = async (...args: unknown[]) => {
      const [text, values] = args as [unknown, unknown[] | undefined];
      if (typeof text === 'string' && text.startsWith('SELECT') && text.includes('FROM executions WHERE id = $1') && values?.[0] === id && ++reads === 2) {
        reached();
        await gate;
      }
      return query(...args);
    };
    try {
      const c = await openSse(`${svc.url}/api/v1/executions/${id}/events/stream`);
      await atSecondRead;
      await consumedUpTo(svc.ctx.bus, 'status', await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', started_at: new Date().toISOString() }));
      release();
      await c.waitFor((e) => e.event === 'job_event' && JSON.parse(e.data).status === 'running');
      await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 0 });
      await c.ended;
      expect(c.events.filter((e) => e.event === 'job_event').map((e) => JSON.parse(e.data).status)).toEqual(['running', 'completed']);
    } finally {
      (pool as { query: unknown }).query = query;
      release();
    }
  });
});
