// SQL of the log_lines table: batched inserts (one statement per flush, whatever the number of
// batches it coalesces) and the reads behind the logs API and the SSE history.
import { iso, withoutNul, withTransaction, type Pool } from '@hodei/platform';
import type { LogLine, LogStream } from '@hodei/types';

/** Lines of one execution, as workers send them (`LogBatch`). */
export interface LinesOf {
  execution_id: string;
  lines: LogLine[];
}

interface LogRow {
  seq: number;
  stream: number;
  line: string;
  ts: Date;
  no_newline: boolean | null;
}

const STREAM_CODE: Record<LogStream, number> = { stdout: 1, stderr: 2 };

export function toLogLine(r: LogRow): LogLine {
  const l: LogLine = { seq: r.seq, stream: r.stream === 2 ? 'stderr' : 'stdout', line: r.line, timestamp: iso(r.ts)! };
  if (r.no_newline) l.no_newline = true;
  return l;
}

const COLUMNS = 'seq, stream, line, ts, no_newline';

/** A PostgreSQL array literal of whole numbers (pg's own conversion quotes and escapes each one). */
const intArray = (values: number[]): string => `{${values.join(',')}}`;

const QUOTED = /["\\]/;
const ESCAPED = /["\\]/g;
/** A PostgreSQL array literal of texts: each quoted, a double quote or a backslash escaped only where a text holds one. */
function textArray(values: string[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    out += `${i ? ',' : ''}"${QUOTED.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${out}}`;
}

/** unique_violation: a line already stored. */
const UNIQUE_VIOLATION = '23505';

/**
 * Inserts the lines of any number of executions in one statement: columns as arrays unnested
 * server-side (eight parameters whatever the count), each execution id and each distinct time
 * given once and referred to by position, which halves PostgreSQL's work per line against one
 * uuid and one time parsed per line. Lines seen before (`redelivered`, or a batch a worker sent
 * twice) are skipped with ON CONFLICT, which costs as much again per line, so a first delivery goes
 * without it and is repeated with it only if a line was there already (the statement stored
 * nothing then). Returns how many lines were new.
 */
export async function insertLines(db: Pool, batches: LinesOf[], redelivered = false): Promise<number> {
  let n = 0;
  for (const b of batches) n += b.lines.length;
  if (n === 0) return 0;
  const ids: string[] = [];
  const times: string[] = [];
  const timeAt = new Map<string, number>();
  const idOf = new Array<number>(n);
  const seqs = new Array<number>(n);
  const streams = new Array<number>(n);
  const texts = new Array<string>(n);
  const timeOf = new Array<number>(n);
  const noNewline = new Array<string>(n);
  let i = 0;
  for (const b of batches) {
    const id = ids.push(b.execution_id);
    for (const l of b.lines) {
      let t = timeAt.get(l.timestamp);
      if (t === undefined) timeAt.set(l.timestamp, (t = times.push(l.timestamp)));
      idOf[i] = id;
      seqs[i] = l.seq;
      streams[i] = STREAM_CODE[l.stream];
      texts[i] = withoutNul(l.line);
      timeOf[i] = t;
      noNewline[i++] = l.no_newline === true ? 't' : 'NULL';
    }
  }
  const insert = (skipStored: boolean) =>
    db.query(
      `INSERT INTO log_lines (execution_id, seq, stream, line, ts, no_newline)
       SELECT ($1::uuid[])[e], s, st, l, ($2::timestamptz[])[t], nn
       FROM unnest($3::int[], $4::int[], $5::smallint[], $6::text[], $7::int[], $8::boolean[]) AS u(e, s, st, l, t, nn)
       ${skipStored ? 'ON CONFLICT (execution_id, seq) DO NOTHING' : ''}`,
      [textArray(ids), textArray(times), intArray(idOf), intArray(seqs), intArray(streams), textArray(texts), intArray(timeOf), `{${noNewline.join(',')}}`],
    );
  if (redelivered) return (await insert(true)).rowCount ?? 0;
  try {
    return (await insert(false)).rowCount ?? 0;
  } catch (err) {
    if ((err as { code?: string }).code !== UNIQUE_VIOLATION) throw err;
    return (await insert(true)).rowCount ?? 0;
  }
}

export interface LogFilter {
  since_seq?: number | undefined;
  tail?: number | undefined;
  stream?: LogStream | undefined;
  grep?: string | undefined;
  grep_regex?: boolean | undefined;
  limit: number;
}

/** PostgreSQL ended a statement at its statement_timeout. */
const QUERY_CANCELED = '57014';

/** A regular-expression search used up its database time (some patterns cost a fraction of a
 *  millisecond a line: minutes on a long log). */
export class RegexTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the regular expression search took over ${timeoutMs} ms`);
  }
}

/** Rows of the first query (lines run to 64 KiB: 64 MiB at most); later ones take about
 *  PAGE_CHARS of text by the lines seen so far, within MAX_PAGE_LINES. */
const FIRST_PAGE_LINES = 1000;
const PAGE_CHARS = 8 * 1024 * 1024;
const MAX_PAGE_LINES = 10_000;
/** The widest range of seqs one query of filtered lines looks through. */
const MAX_SPAN = 100_000;

/*
 * Every read is bounded by a range of seqs, not only by a LIMIT: the statistics of a new execution's
 * lines are stale until an ANALYZE (which, on a large table, one job's lines may never bring), and
 * with them PostgreSQL read and sorted every line after the page for each page (replaying 1,000,000
 * lines took minutes).
 */

/**
 * The lines the filter selects, in seq order, a page at a time: never the whole answer in memory
 * (10,000 lines of 64 KiB made one JSON string past V8's limit, a 500). With `tail`, the last
 * min(tail, limit) lines; else the first `limit`. Lines stored after the read began are left out.
 */
export async function* readLines(db: Pool, executionId: string, f: LogFilter, regexTimeoutMs: number): AsyncGenerator<LogLine[]> {
  let left = f.tail === undefined ? f.limit : Math.min(f.tail, f.limit);
  if (left <= 0) return;
  const last = await maxStoredSeq(db, executionId);
  const where = ['execution_id = $1', 'seq > $2', 'seq <= $3'];
  const args: unknown[] = [executionId, undefined, undefined]; // $2, $3: the range each query reads
  if (f.stream) where.push(`stream = $${args.push(STREAM_CODE[f.stream])}`);
  const grep = f.grep !== undefined && f.grep !== '';
  const regex = grep && f.grep_regex === true;
  if (grep) {
    where.push(regex ? `line ~ $${args.push(f.grep)}` : `strpos(line, $${args.push(f.grep)}) > 0`);
  }
  const w = where.join(' AND ');
  // the time counted is the queries' own, not the waits for a slow client between pages
  const clock = { leftMs: regexTimeoutMs, timeoutMs: regexTimeoutMs };
  const query = (after: number, upTo: number, order: string, n: number) => {
    const sql = `SELECT ${COLUMNS} FROM log_lines WHERE ${w} ${order} LIMIT $${args.length + 1}`;
    const values = [args[0], after, upTo, ...args.slice(3), n];
    return regex ? timedQuery(db, sql, values, clock) : db.query<LogRow>(sql, values);
  };
  let after = f.since_seq ?? 0;
  if (f.tail !== undefined) {
    // where the last `left` lines start: the left-th line from the end
    const { rows } = await query(after, last, `ORDER BY seq DESC OFFSET ${left - 1}`, 1);
    if (rows[0]) after = rows[0].seq - 1;
  }
  let pageLines = FIRST_PAGE_LINES;
  let span = FIRST_PAGE_LINES;
  while (left > 0 && after < last) {
    const n = Math.min(pageLines, left);
    const upTo = Math.min(last, after + Math.max(n, span));
    const { rows } = await query(after, upTo, 'ORDER BY seq', n);
    if (rows.length) yield rows.map(toLogLine);
    left -= rows.length;
    if (rows.length < n) {
      // the range held fewer (a filter, or missing lines): look further at once next time
      after = upTo;
      span = Math.min(span * 2, MAX_SPAN);
      continue;
    }
    after = rows[rows.length - 1]!.seq;
    const chars = rows.reduce((sum, r) => sum + r.line.length, 0);
    pageLines = Math.max(1, Math.min(MAX_PAGE_LINES, Math.floor(PAGE_CHARS / Math.max(1, chars / rows.length))));
  }
}

/** A regex query given what is left of the search's time as its statement_timeout: PostgreSQL stops
 *  it there (a client-side timeout would leave the backend searching). */
async function timedQuery(db: Pool, sql: string, values: unknown[], clock: { leftMs: number; timeoutMs: number }) {
  const started = performance.now();
  try {
    return await withTransaction(db, async (client) => {
      await client.query("SELECT set_config('statement_timeout', $1, true)", [String(Math.max(1, Math.ceil(clock.leftMs)))]);
      return client.query<LogRow>(sql, values);
    });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === QUERY_CANCELED && e.message?.includes('statement timeout')) throw new RegexTimeoutError(clock.timeoutMs);
    throw err;
  } finally {
    clock.leftMs -= performance.now() - started;
  }
}

/** Lines after `afterSeq` in seq order, up to `limit` (fewer when some are missing): the SSE history. */
export async function readPage(db: Pool, executionId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
  const { rows } = await db.query<LogRow>(
    `SELECT ${COLUMNS} FROM log_lines WHERE execution_id = $1 AND seq > $2 AND seq <= $2::bigint + $3::bigint ORDER BY seq LIMIT $3`,
    [executionId, afterSeq, limit],
  );
  return rows.map(toLogLine);
}

export async function maxStoredSeq(db: Pool, executionId: string): Promise<number> {
  const { rows } = await db.query<{ m: number | null }>('SELECT max(seq) AS m FROM log_lines WHERE execution_id = $1', [executionId]);
  return rows[0]?.m ?? 0;
}

/** How many of the execution's lines 1..`lastSeq` are stored (fewer than `lastSeq`: some are missing). */
export async function countStoredUpTo(db: Pool, executionId: string, lastSeq: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM log_lines WHERE execution_id = $1 AND seq <= $2', [executionId, lastSeq]);
  return rows[0]?.n ?? 0;
}
