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
}

const STREAM_CODE: Record<LogStream, number> = { stdout: 1, stderr: 2 };

export function toLogLine(r: LogRow): LogLine {
  return { seq: r.seq, stream: r.stream === 2 ? 'stderr' : 'stdout', line: r.line, timestamp: iso(r.ts)! };
}

/**
 * Inserts lines of any number of executions in one statement (arrays unnested server-side, so the
 * parameter count stays at five); a line already stored (a redelivered batch) is skipped.
 */
export async function insertLines(db: Pool, lines: StoredLine[]): Promise<void> {
  if (lines.length === 0) return;
  const ids = new Array<string>(lines.length);
  const seqs = new Array<number>(lines.length);
  const streams = new Array<number>(lines.length);
  const texts = new Array<string>(lines.length);
  const ts = new Array<string>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    ids[i] = l.execution_id;
    seqs[i] = l.seq;
    streams[i] = STREAM_CODE[l.stream];
    texts[i] = withoutNul(l.line);
    ts[i] = l.timestamp;
  }
  await db.query(
    `INSERT INTO log_lines (execution_id, seq, stream, line, ts)
     SELECT * FROM unnest($1::uuid[], $2::int[], $3::smallint[], $4::text[], $5::timestamptz[])
     ON CONFLICT (execution_id, seq) DO NOTHING`,
    [ids, seqs, streams, texts, ts],
  );
}

export interface LogFilter {
  since_seq?: number | undefined;
  tail?: number | undefined;
  stream?: LogStream | undefined;
  grep?: string | undefined;
  grep_regex?: boolean | undefined;
  limit: number;
}

export async function readLines(db: Pool, executionId: string, f: LogFilter): Promise<LogLine[]> {
  const where = ['execution_id = $1'];
  const args: unknown[] = [executionId];
  if (f.since_seq !== undefined) where.push(`seq > $${args.push(f.since_seq)}`);
  if (f.stream) where.push(`stream = $${args.push(STREAM_CODE[f.stream])}`);
  if (f.grep !== undefined && f.grep !== '') {
    where.push(f.grep_regex ? `line ~ $${args.push(f.grep)}` : `strpos(line, $${args.push(f.grep)}) > 0`);
  }
  const w = where.join(' AND ');
  if (f.tail !== undefined) {
    const n = Math.min(f.tail, f.limit);
    const { rows } = await db.query<LogRow>(
      `SELECT * FROM (SELECT seq, stream, line, ts FROM log_lines WHERE ${w} ORDER BY seq DESC LIMIT $${args.length + 1}) t ORDER BY seq`,
      [...args, n],
    );
    return rows.map(toLogLine);
  }
  const { rows } = await db.query<LogRow>(
    `SELECT seq, stream, line, ts FROM log_lines WHERE ${w} ORDER BY seq LIMIT $${args.length + 1}`,
    [...args, f.limit],
  );
  return rows.map(toLogLine);
}

/** Lines after `afterSeq` in seq order, a page at a time (SSE history). */
export async function readPage(db: Pool, executionId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
  const { rows } = await db.query<LogRow>(
    'SELECT seq, stream, line, ts FROM log_lines WHERE execution_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
    [executionId, afterSeq, limit],
  );
  return rows.map(toLogLine);
}

export async function readTail(db: Pool, executionId: string, n: number): Promise<LogLine[]> {
  if (n <= 0) return [];
  const { rows } = await db.query<LogRow>(
    'SELECT * FROM (SELECT seq, stream, line, ts FROM log_lines WHERE execution_id = $1 ORDER BY seq DESC LIMIT $2) t ORDER BY seq',
    [executionId, n],
  );
  return rows.map(toLogLine);
}

export async function maxStoredSeq(db: Pool, executionId: string): Promise<number> {
  const { rows } = await db.query<{ m: number | null }>('SELECT max(seq) AS m FROM log_lines WHERE execution_id = $1', [executionId]);
  return rows[0]?.m ?? 0;
}
