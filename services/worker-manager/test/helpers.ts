// Test helpers: an SSE client over fetch, publishing what a worker would publish, and the REST
// calls the real-path tests make.
import { decodeJson, encodeJson, parseSseBlock, type Bus, type RunningService } from '@hodei/platform';
import { isFinalStatus, type Execution, type ExecutionStatusEvent, type LogLine } from '@hodei/types';
import { expect } from 'vitest';
import { insertLines } from '../src/store/logs.js';

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
  at: number;
}

export interface SseClient {
  status: number;
  headers: Headers;
  events: SseEvent[];
  /** Resolves when the server closed the stream. */
  ended: Promise<void>;
  waitFor: (pred: (e: SseEvent) => boolean, timeoutMs?: number) => Promise<SseEvent>;
  close: () => void;
}

export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal });
  const events: SseEvent[] = [];
  const waiters: (() => void)[] = [];
  const notify = () => {
    for (const w of waiters.splice(0)) w();
  };
  const ended = (async () => {
    if (!res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const e = parseSseBlock(block);
          if (e) events.push({ ...e, at: performance.now() });
        }
        notify();
      }
    } catch {
      // aborted by close()
    } finally {
      notify();
    }
  })();
  let over = false;
  void ended.then(() => (over = true));
  const waitFor = async (pred: (e: SseEvent) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find(pred);
      if (found) return found;
      if (over) throw new Error(`stream ended without the awaited event; got ${events.map((e) => e.event).join(',')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for an event; got ${events.length} events`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  };
  return { status: res.status, headers: res.headers, events, ended, waitFor, close: () => ac.abort() };
}

export const logEvents = (c: SseClient) => c.events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data) as LogLine);

export function lines(from: number, to: number, stream: 'stdout' | 'stderr' = 'stdout', text = (n: number) => `line ${n}`): LogLine[] {
  const out: LogLine[] = [];
  for (let s = from; s <= to; s++) out.push({ seq: s, stream, line: text(s), timestamp: new Date().toISOString() });
  return out;
}

/** What a worker does: a batch of lines on `<p>.logs.<id>`. Returns its sequence in the logs stream. */
export async function publishLines(bus: Bus, executionId: string, batch: LogLine[]): Promise<number> {
  return (await bus.js.publish(bus.subjects.logs(executionId), encodeJson({ execution_id: executionId, lines: batch }))).seq;
}

/** Returns the event's sequence in the events stream. */
export async function publishStatus(bus: Bus, e: Partial<ExecutionStatusEvent> & Pick<ExecutionStatusEvent, 'execution_id' | 'status'>): Promise<number> {
  const event: ExecutionStatusEvent = { job_id: null, worker_id: null, timestamp: new Date().toISOString(), ...e };
  return (await bus.js.publish(bus.subjects.executionStatus(e.execution_id), encodeJson(event))).seq;
}

/** Once worker-manager has handled (and acked) every message of its durable consumer up to stream sequence `seq`:
 *  `logs` stores log batches, `status` applies the status events `publishStatus` sends. */
export async function consumedUpTo(bus: Bus, consumer: 'logs' | 'status', seq: number): Promise<void> {
  const stream = consumer === 'logs' ? bus.subjects.logsStream : bus.subjects.eventsStream;
  await until(async () => (await bus.jsm.consumers.info(stream, `worker-manager-${consumer}`)).ack_floor.stream_seq >= seq, 10_000, `worker-manager's ${consumer} consumer to reach ${seq}`);
  await bus.nc.flush();
}

/** The first message on `subject` from now on (decoded JSON); rejects naming the subject when none comes within `timeoutMs`. */
export function nextMessage(bus: Bus, subject: string, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`no message on ${subject} within ${timeoutMs} ms`));
    }, timeoutMs);
    const sub = bus.nc.subscribe(subject, {
      max: 1,
      callback: (_err, m) => {
        clearTimeout(timer);
        resolve(decodeJson(m.data));
      },
    });
  });
}

export async function until<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const call = (base: string, method: string, path: string, body?: unknown) =>
  fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

/** POST /api/v1/execute on worker-manager at `base`; it must be accepted (202). */
export async function executeOn(base: string, body: unknown): Promise<Execution> {
  const res = await call(base, 'POST', '/api/v1/execute', body);
  expect(res.status).toBe(202);
  return (await res.json()) as Execution;
}

export const getExecutionOn = async (base: string, id: string) =>
  (await (await call(base, 'GET', `/api/v1/executions/${id}`)).json()) as Execution;

/** The execution once it has a final status. */
export const finishedOn = (base: string, id: string, ms: number) =>
  until(async () => {
    const e = await getExecutionOn(base, id);
    return isFinalStatus(e.status) && e;
  }, ms, `execution ${id} to finish`);

/** An execution on `svc` that ended `completed` with lines 1..`n` (stdout, `text(seq)`) stored
 *  straight into the table, 20,000 at a time: a long history to read back. */
export async function finishedWithStoredLines(svc: RunningService, n: number, text: (seq: number) => string): Promise<string> {
  const { id } = await executeOn(svc.url, { command: 'true' });
  for (let from = 1; from <= n; from += 20_000) {
    const batch = lines(from, Math.min(from + 19_999, n), 'stdout', text);
    await insertLines(svc.ctx.db, [{ execution_id: id, lines: batch }]);
  }
  await consumedUpTo(svc.ctx.bus, 'status', await publishStatus(svc.ctx.bus, { execution_id: id, status: 'completed', exit_code: 0, last_seq: n, duration_ms: 1 }));
  return id;
}
