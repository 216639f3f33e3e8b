// SQL of the log_lines table: batched inserts (one statement per flush, whatever the number of
// batches it coalesces) and the reads behind the logs API and the SSE history.
import { iso, withoutNul, type Pool } from '@hodei/platform';
import type { LogLine, LogStream } from '@hodei/types';

export interface StoredLine extends LogLine {
  execution_id: string;
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

/**
 * Inserts lines of any number of executions in one statement (arrays unnested server-side, so the
 * parameter count stays at six); a line already stored (a redelivered batch) is skipped.
 * Returns how many lines were new.
 */
export async function insertLines(db: Pool, lines: StoredLine[]): Promise<number> {
  if (lines.length === 0) return 0;
  const ids = new Array<string>(lines.length);
  const seqs = new Array<number>(lines.length);
  const streams = new Array<number>(lines.length);
  const texts = new Array<string>(lines.length);
  const ts = new Array<string>(lines.length);
  const noNewline = new Array<boolean | null>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    ids[i] = l.execution_id;
    seqs[i] = l.seq;
    streams[i] = STREAM_CODE[l.stream];
    texts[i] = withoutNul(l.line);
    ts[i] = l.timestamp;
    noNewline[i] = l.no_newline ?? null;
  }
  const res = await db.query(
    `INSERT INTO log_lines (execution_id, seq, stream, line, ts, no_newline)
     SELECT * FROM unnest($1::uuid[], $2::int[], $3::smallint[], $4::text[], $5::timestamptz[], $6::boolean[])
     ON CONFLICT (execution_id, seq) DO NOTHING`,
    [ids, seqs, streams, texts, ts, noNewline],
  );
  return res.rowCount ?? 0;
}

export interface LogFilter {
  since_seq?: number | undefined;
  tail?: number | undefined;
  stream?: LogStream | undefined;
  grep?: string | undefined;
  grep_regex?: boolean | undefined;
  limit: number;
}

/** Rows of the first query (lines run to 64 KiB: 64 MiB at most); later ones take about
 *  PAGE_CHARS of text by the lines seen so far, within MAX_PAGE_LINES. */
const FIRST_PAGE_LINES = 1000;
const PAGE_CHARS = 8 * 1024 * 1024;
const MAX_PAGE_LINES = 10_000;

/**
 * The lines the filter selects, in seq order, a page at a time: never the whole answer in memory
 * (10,000 lines of 64 KiB made one JSON string past V8's limit, a 500). With `tail`, the last
 * min(tail, limit) lines; else the first `limit`.
 */
export async function* readLines(db: Pool, executionId: string, f: LogFilter): AsyncGenerator<LogLine[]> {
  const where = ['execution_id = $1', 'seq > $2'];
  const args: unknown[] = [executionId, undefined]; // $2: the seq each query reads after
  if (f.stream) where.push(`stream = $${args.push(STREAM_CODE[f.stream])}`);
  if (f.grep !== undefined && f.grep !== '') {
    where.push(f.grep_regex ? `line ~ $${args.push(f.grep)}` : `strpos(line, $${args.push(f.grep)}) > 0`);
  }
  const w = where.join(' AND ');
  const query = (after: number, tail: string, n: number) =>
    db.query<LogRow>(`SELECT ${COLUMNS} FROM log_lines WHERE ${w} ${tail} LIMIT $${args.length + 1}`, [args[0], after, ...args.slice(2), n]);
  let after = f.since_seq ?? -1;
  let left = f.tail === undefined ? f.limit : Math.min(f.tail, f.limit);
  if (left <= 0) return;
  if (f.tail !== undefined) {
    // where the last `left` lines start: the left-th line from the end
    const { rows } = await query(after, `ORDER BY seq DESC OFFSET ${left - 1}`, 1);
    if (rows[0]) after = rows[0].seq - 1;
  }
  let pageLines = FIRST_PAGE_LINES;
  while (left > 0) {
    const n = Math.min(pageLines, left);
    const { rows } = await query(after, 'ORDER BY seq', n);
    if (rows.length) yield rows.map(toLogLine);
    if (rows.length < n) return;
    left -= n;
    after = rows[rows.length - 1]!.seq;
    // few queries for short lines: each may cost a sort of every line after `after` (stale statistics)
    const chars = rows.reduce((sum, r) => sum + r.line.length, 0);
    pageLines = Math.max(1, Math.min(MAX_PAGE_LINES, Math.floor(PAGE_CHARS / Math.max(1, chars / rows.length))));
  }
}

/** Lines after `afterSeq` in seq order, a page at a time (SSE history). */
export async function readPage(db: Pool, executionId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
  const { rows } = await db.query<LogRow>(
    `SELECT ${COLUMNS} FROM log_lines WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
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
