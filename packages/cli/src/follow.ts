// Following an execution's log stream (SSE): history then live lines, reconnecting with
// Last-Event-ID when the connection breaks, never delivering a seq twice.
import { ExecutionStatus, type LogLine, z } from '@hodei/types';
import { CliError, UnreachableError } from './errors.js';
import { isAbort, type HodeiClient } from './http.js';
import { isOutage, Outage } from './outage.js';
import { backlog } from './output.js';
import { readSseBatches } from './sse.js';
import { watchWaiting } from './waiting.js';

export const Completed = z.object({
  status: ExecutionStatus,
  exit_code: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
  message: z.string().nullable().optional(),
  duration_ms: z.number().nullable().optional(),
});
export type Completed = z.infer<typeof Completed>;

export interface FollowOptions {
  executionId: string;
  /** Only lines after this seq. */
  sinceSeq?: number;
  /** Only the last N lines of history (first connection only). */
  tail?: number;
  onLine: (line: LogLine) => void;
  /** The lines at hand were all given to onLine (the stream waits for more): write what was held back. */
  flush?: () => void;
  /** Give up after the stream has been down this long (ms), counted from the start of each outage. */
  giveUpAfterMs?: number;
  /** While the execution is queued: why it waits (each new reason once). */
  onWaiting?: (reason: string) => void;
  /** The first connection too waits out a worker-manager away or answering 503, as reconnections
   *  do (`logs -f`); without it (`run`, which has just heard from it), that is an error at once. */
  waitFromStart?: boolean;
  /** The stream broke, or the worker-manager is away (the reason): once per outage. */
  onDown?: (reason: string) => void;
  /** Streaming again after onDown: a connection delivered. */
  onBack?: () => void;
}

export async function followLogs(client: HodeiClient, opts: FollowOptions): Promise<Completed> {
  const waiting = opts.onWaiting ? watchWaiting(client, opts.executionId, opts.onWaiting) : undefined;
  try {
    return await follow(client, { ...opts, onLine: (l) => (waiting?.stop(), opts.onLine(l)) });
  } finally {
    opts.flush?.();
    waiting?.stop();
  }
}

async function follow(client: HodeiClient, opts: FollowOptions): Promise<Completed> {
  let lastSeq = opts.sinceSeq ?? 0;
  let tries = 0;
  // --tail applies to the history until a connection delivers it, also after a first try that failed
  let delivered = false;
  const outage = new Outage(opts.giveUpAfterMs);
  const path = `/api/v1/executions/${opts.executionId}/logs/stream`;
  // the lines read so far are written, and the stream is read no further than the reader of hodei's output has taken
  const printed = async () => {
    opts.flush?.();
    const written = backlog();
    if (written) await written;
  };
  /** false once the outage has lasted too long */
  const wentDown = (reason: string): boolean => {
    if (!outage.active) opts.onDown?.(reason);
    return outage.failed();
  };
  const delivering = () => {
    if (!outage.active) return;
    outage.over();
    opts.onBack?.();
  };
  for (;;) {
    const reconnect = tries++ > 0;
    let res: Response;
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      // a Last-Event-ID resumes with nothing cut: until a connection delivered, since_seq and tail both apply
      if (lastSeq > 0 && delivered) headers['last-event-id'] = String(lastSeq);
      const since = lastSeq > 0 ? lastSeq : undefined;
      const query = delivered ? { since_seq: since } : { since_seq: since, tail: opts.tail };
      res = await client.fetch('worker-manager', 'GET', path, { headers, query, timeoutMs: null });
      if (!res.ok) throw await client.errorOf('worker-manager', 'GET', path, res);
    } catch (err) {
      if (!isOutage(err) || (!reconnect && !opts.waitFromStart) || !wentDown(err.message)) throw err;
      await outage.backOff();
      continue;
    }
    if (!res.body) throw new CliError(`the worker-manager answered ${res.status} to the log stream, without a body`);
    try {
      for await (const events of readSseBatches(res.body, delivering, printed)) {
        delivered = true;
        for (const ev of events) {
          if (ev.event === 'log') {
            const line = asLogLine(safeJson(ev.data));
            if (!line || line.seq <= lastSeq) continue;
            lastSeq = line.seq;
            opts.onLine(line);
          } else if (ev.event === 'completed') {
            const done = Completed.safeParse(safeJson(ev.data));
            if (!done.success) throw new CliError('unexpected completed event on the log stream', 1, done.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
            return done.data;
          }
        }
      }
    } catch (err) {
      // anything else is the connection breaking mid-stream: reconnect below
      if (err instanceof CliError || isAbort(err)) throw err;
    }
    if (!wentDown('the log stream broke'))
      throw new UnreachableError('worker-manager', client.config.urls['worker-manager'], 'log stream kept breaking');
    await outage.backOff();
  }
}

/** A LogLine, checked without zod: its parse of every line was a tenth of `logs -f`'s CPU on a job
 *  printing fast. The same rules as the LogLine schema; keys it does not know are left out. */
function asLogLine(v: unknown): LogLine | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { seq, stream, line, timestamp, no_newline } = v as Record<string, unknown>;
  if (!Number.isInteger(seq) || (seq as number) < 1 || (stream !== 'stdout' && stream !== 'stderr')) return undefined;
  if (typeof line !== 'string' || typeof timestamp !== 'string' || (no_newline !== undefined && no_newline !== true)) return undefined;
  return no_newline ? { seq: seq as number, stream, line, timestamp, no_newline } : { seq: seq as number, stream, line, timestamp };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
