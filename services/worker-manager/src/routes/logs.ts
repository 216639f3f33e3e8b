// Logs of one execution: the stored lines (JSON or plain text), the live log stream (SSE), and
// the status event streams.
import type { Response } from 'express';
import { BadRequestError, drained, HttpError, lastEventIdHeader, NotFoundError, SseConnection, type Api, type Pool } from '@hodei/platform';
import { IdParams, isFinalStatus, LogsQueryFull, LogsResponse, LogStreamQuery, MAX_SEQ, rawText, z, type ExecutionStatus } from '@hodei/types';
import type { EventHub, LiveEvent } from '../live/event-hub.js';
import { finalOf, type LogHub } from '../live/log-hub.js';
import * as executions from '../store/executions.js';
import { maxStoredSeq, readLines, RegexTimeoutError } from '../store/logs.js';

const tag = 'Logs';
/** Size of the pieces a logs answer is sent in. */
const CHUNK_CHARS = 256 * 1024;
const SSE = { description: 'text/event-stream', schema: z.string(), contentType: 'text/event-stream' };

export function registerLogRoutes(api: Api, db: Pool, hub: LogHub, events: EventHub, grepTimeoutMs: number): void {
  const find = async (id: string) => {
    const row = await executions.getExecution(db, id);
    if (!row) throw new NotFoundError('execution', id);
    return row;
  };

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions/:id/logs',
      tag,
      summary:
        'Stored log lines in seq order. since_seq: lines after that seq; tail: the last N (after the other filters); ' +
        'stream: stdout|stderr; grep: case-sensitive substring, or a POSIX regular expression with grep_regex=true ' +
        '(its search may take HODEI_LOG_GREP_TIMEOUT_MS, 10 s by default: past it, a 422 naming grep); ' +
        'limit (default 10000; with Accept: text/plain, the whole log). next_seq: pass it as since_seq to get only the lines after this answer (the last line returned, ' +
        'or the last line stored when the answer reached the end, as with tail=0, a grep matching nothing or since_seq past the end). ' +
        'Accept: text/plain gives the lines as raw text.',
      params: IdParams,
      query: LogsQueryFull,
      responses: {
        200: { description: 'lines; with Accept: text/plain, the bytes the job wrote: each line followed by a newline (but a no_newline one), the pieces of a line over 64 KiB joined', schema: LogsResponse, alternatives: { 'text/plain': z.string() } },
        404: { description: 'no such execution' },
        422: { description: 'the regular expression (grep_regex) took longer than HODEI_LOG_GREP_TIMEOUT_MS to search the log; `errors` names grep' },
      },
    },
    async ({ params, query }, req, res) => {
      await find(params.id);
      if (query.grep_regex && query.grep) await checkRegex(db, query.grep);
      const text = req.accepts(['application/json', 'text/plain']) === 'text/plain';
      // the raw text is the log as a file (saved, piped to grep): it carries no next_seq to go on from, so it is all of it
      const limit = text && req.query.limit === undefined ? Number.MAX_SAFE_INTEGER : query.limit;
      // read first: a line stored while the answer is read has a greater seq and comes next time
      const stored = await maxStoredSeq(db, params.id);
      const pages = readLines(db, params.id, { ...query, limit }, grepTimeoutMs);
      const first = await pages.next().catch((err: unknown) => {
        throw grepProblem(err);
      });
      // written a page at a time, each line on its own: the whole answer as one string could pass
      // V8's limit on a string's length (a 500), and held far more memory than the lines
      const out = new BodyWriter(res.status(200).type(text ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8'));
      let next = query.since_seq ?? 0;
      let count = 0;
      try {
        if (!text) await out.write(`{"execution_id":${JSON.stringify(params.id)},"lines":[`);
        for (let page = first; !page.done; page = await pages.next()) {
          for (const l of page.value) {
            if (!(await out.write(text ? rawText(l) : `${count ? ',' : ''}${JSON.stringify(l)}`))) return;
            count++;
            next = l.seq;
          }
        }
        // the answer reached the end (filters, tail, or fewer lines than the limit): continue from there
        if (query.tail !== undefined || count < query.limit) next = Math.max(next, stored);
        if (!text) await out.write(`],"next_seq":${next}}`);
        await out.end();
      } catch (err) {
        res.destroy(); // what was sent is not the whole answer: the client must not take it for one
        throw grepProblem(err);
      } finally {
        await pages.return(undefined);
      }
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions/:id/logs/stream',
      tag,
      summary:
        'Live log lines (SSE): `connected`, history (all, after ?since_seq=, its last ?tail=N lines as on GET …/logs, or after ' +
        'Last-Event-ID, which resumes with no line cut whatever tail says), live lines ' +
        'with no gap and no duplicate (`id` = seq), then `completed` and the stream closes.',
      params: IdParams,
      query: LogStreamQuery,
      headers: lastEventIdHeader('the seq of the last line received (a reconnecting EventSource sends it): the lines after it, as since_seq'),
      responses: { 200: SSE, 404: { description: 'no such execution' } },
    },
    async ({ params, query }, req, res) => {
      const head = await find(params.id);
      const lastEventId = req.get('last-event-id');
      const resumed = lastEventId !== undefined && lastEventId !== '';
      let since = query.since_seq;
      if (resumed) {
        const n = /^\d{1,10}$/.test(lastEventId) ? Number(lastEventId) : NaN;
        if (!(n <= MAX_SEQ)) throw new BadRequestError('Last-Event-ID must be a seq', [{ path: 'Last-Event-ID', message: `must be an integer from 0 to ${MAX_SEQ}` }]);
        since = n;
      }
      const conn = new SseConnection(req, res);
      conn.event('connected', { execution_id: params.id, status: head.status });
      // register before reading anything, so no live line can fall between history and live
      const sub = hub.subscribe(params.id, conn, (since ?? 0) + 1);
      const row = await executions.getExecution(db, params.id);
      // tail cuts the history as on GET …/logs (the last N of the lines after since_seq); a reconnecting
      // EventSource still sends its URL's ?tail=, but resumes after its last line with nothing cut
      if (!resumed && query.tail !== undefined) {
        const max = Math.max(row?.last_seq ?? 0, await maxStoredSeq(db, params.id), hub.pendingMax(params.id));
        sub.nextSeq = Math.max((since ?? 0) + 1, max - query.tail + 1);
      }
      if (row && isFinalStatus(row.status)) {
        sub.setFinal(finalOf(row));
      }
      await sub.catchUp();
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions/:id/events/stream',
      tag,
      summary:
        'Status changes of one execution (SSE): `connected`, `job_event` {type:"status_changed",…} for the current ' +
        'status and every change, `progress` events; closes after the final status.',
      params: IdParams,
      responses: { 200: SSE, 404: { description: 'no such execution' } },
    },
    async ({ params }, req, res) => {
      const head = await find(params.id);
      const conn = new SseConnection(req, res);
      const queued: LiveEvent[] = [];
      let ready = false;
      const send = (e: LiveEvent) => {
        if (e.kind === 'progress') conn.event('progress', { execution_id: e.execution_id, ...e.progress });
        else {
          conn.event('job_event', e.data);
          if (e.final) conn.end();
        }
        dropIfStalled(conn, res);
      };
      const off = events.on(params.id, (e) => (ready ? send(e) : queued.push(e)));
      conn.onClose(off);
      conn.event('connected', { execution_id: params.id, status: head.status });
      const row = (await executions.getExecution(db, params.id)) ?? head;
      const final = isFinalStatus(row.status);
      conn.event('job_event', {
        type: 'status_changed',
        execution_id: row.id,
        job_id: row.job_id,
        status: row.status,
        message: row.status === 'queued' ? row.waiting : row.message,
        timestamp: executions.statusTimestamp(row),
      });
      if (row.progress) conn.event('progress', { execution_id: row.id, ...row.progress });
      if (final) {
        conn.end();
        return;
      }
      ready = true;
      // what reached this stream while the row was read may be in it already (a replica's relay
      // comes late): an execution's status only moves forward, so such a status is not sent twice
      for (const e of queued.splice(0)) if (!conn.closed && !(e.kind === 'status' && !statusAfter(e.data.status, row.status))) send(e);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/events/stream',
      tag,
      summary: 'Every execution\'s status changes (SSE, for dashboards): `job_event` {type:"status_changed",execution_id,job_id,status,message,timestamp}',
      responses: { 200: SSE },
    },
    async (_input, req, res) => {
      const conn = new SseConnection(req, res);
      conn.event('connected', {});
      const off = events.on(null, (e) => {
        if (e.kind !== 'status') return;
        conn.event('job_event', e.data);
        dropIfStalled(conn, res);
      });
      conn.onClose(off);
    },
  );
}

/** PostgreSQL compiles a pattern only when a line is tested against it: with no line to test (none
 *  stored yet, or all filtered out first) an invalid one would answer 200. */
async function checkRegex(db: Pool, pattern: string): Promise<void> {
  try {
    await db.query(`SELECT '' ~ $1`, [pattern]);
  } catch (err) {
    if ((err as { code?: string }).code === '2201B')
      throw new BadRequestError('grep is not a valid regular expression', [{ path: 'grep', message: (err as Error).message }]);
    throw err;
  }
}

/** A regex search out of time is the pattern's cost on this log: the client's to change, not a 500. */
function grepProblem(err: unknown): unknown {
  if (!(err instanceof RegexTimeoutError)) return err;
  const message =
    `the regular expression took longer than ${err.timeoutMs} ms to search this log: use a simpler pattern or a substring ` +
    '(grep_regex=false), or search fewer lines (since_seq, stream)';
  return new HttpError(422, 'Unprocessable Content', `grep: ${message}`, [{ path: 'grep', message }]);
}

/** Writes a response body in pieces of about CHUNK_CHARS, waiting while the client is behind. */
class BodyWriter {
  private buf = '';

  constructor(private readonly res: Response) {}

  /** False once the client is gone: nothing more is worth reading. */
  async write(text: string): Promise<boolean> {
    this.buf += text;
    return this.buf.length < CHUNK_CHARS || this.flush();
  }

  async end(): Promise<void> {
    if (await this.flush()) this.res.end();
  }

  private async flush(): Promise<boolean> {
    const res = this.res;
    const chunk = this.buf;
    this.buf = '';
    if (res.destroyed) return false;
    if (!res.write(chunk)) await drained(res);
    return !res.destroyed;
  }
}

const STATUS_ORDER: Partial<Record<ExecutionStatus, number>> = { pending: 0, queued: 1, running: 2 };
/** An execution's status goes pending → queued → running → a final one, never back. */
const statusAfter = (next: ExecutionStatus, current: ExecutionStatus): boolean =>
  (STATUS_ORDER[next] ?? 3) > (STATUS_ORDER[current] ?? 3);

/** Status events have no replay to catch up from, so a client that stopped reading is dropped once
 *  this much waits for it, rather than buffered for without end; it can reconnect. */
const MAX_EVENT_BACKLOG_BYTES = 4 * 1024 * 1024;

function dropIfStalled(conn: SseConnection, res: Response): void {
  if (conn.backlog > MAX_EVENT_BACKLOG_BYTES) res.destroy();
}
