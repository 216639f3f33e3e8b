// Ships the log lines of every execution on this worker to JetStream, in order per execution, in
// small messages. What was read in one turn of the event loop leaves at once, the lines of all
// executions together in one `LogMessage` (at most MAX_BATCH_LINES lines / MAX_BATCH_BYTES bytes),
// without waiting for the acknowledgement of the message before it: up to WINDOW are in flight;
// but no sooner than COALESCE_MS after the message before it, so that output arriving continuously
// leaves in a few messages rather than one per line. Fifty jobs printing a line each 10 ms were
// 5,000 messages a second, one per line, each stored, acked and delivered twice; read together
// they are a few hundred. Past HIGH_WATER bytes waiting
// for one execution, its owner is told to pause reading until they fall under LOW_WATER; and every
// execution pauses while worker-manager says it is behind storing lines (`LogBacklog`), so that
// a job printing faster than lines can be stored slows down instead of queueing minutes of lines
// in the stream ahead of every other job's.
import type { JetStreamClient } from '@nats-io/jetstream';
import type { LogBatch, LogMessage, LogStream } from '@hodei/types';
import { MESSAGE_HEADROOM, type Logger } from '@hodei/platform';
import { MAX_LINE_BYTES } from './lines.js';
import { isStreamFull, PublishOutage, STREAM_FULL } from './outage.js';

export const MAX_BATCH_LINES = 200;
export const MAX_BATCH_BYTES = 256 * 1024;
/**
 * The smallest NATS `max_payload` a worker runs with: one message must hold one line of
 * MAX_LINE_BYTES even when every byte is a control character that JSON writes as `\u00XX`.
 */
export const MIN_MAX_PAYLOAD = MAX_LINE_BYTES * 6 + 2 * MESSAGE_HEADROOM;
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 4 * 1024 * 1024;
const LINE_OVERHEAD = 80; // seq, stream, timestamp and JSON punctuation
/** While worker-manager is behind, an execution with more lines than this waiting sends none. */
const HELD_BACK_OVER = MAX_BATCH_LINES;
/** worker-manager repeats `behind` every second: without it for this long, reading resumes. */
export const BACKLOG_SIGNAL_TTL_MS = 3000;
/**
 * Messages in flight at once. Waiting for each ack before the next message held a line that came
 * while an ack was on its way for that round trip (milliseconds with 50 jobs writing). They leave
 * in order on the one connection; a publish that is retried can land after later ones, which
 * worker-manager accepts (it orders by seq).
 */
const WINDOW = 8;
/**
 * The least time between two messages. A line that comes after a quiet spell leaves at once (a job
 * printing now and then sees no delay); lines that keep coming wait at most this long and leave
 * together, which spares the worker, nats-server and worker-manager a message each.
 */
export const COALESCE_MS = 2;

type Line = LogBatch['lines'][number];

/** One execution's lines: those waiting to be sent, and how many sent ones are not acked yet. */
export class ExecutionLog {
  pending: Line[] = [];
  /** Index of the first line not yet taken into a message (no shifting of a long array per message). */
  head = 0;
  pendingBytes = 0;
  inflightBytes = 0;
  unacked = 0;
  /** Over HIGH_WATER, until under LOW_WATER. */
  private full = false;
  /** What the owner was last told. */
  private paused = false;
  idleWaiters: Array<() => void> = [];

  constructor(
    private readonly shipper: LogShipper,
    readonly executionId: string,
    readonly onPressure: (pause: boolean) => void,
  ) {}

  add(seq: number, stream: LogStream, line: string, timestamp: string, noNewline = false): void {
    this.pending.push(noNewline ? { seq, stream, line, timestamp, no_newline: true } : { seq, stream, line, timestamp });
    this.pendingBytes += line.length + LINE_OVERHEAD;
    if (!this.full && this.pendingBytes + this.inflightBytes > HIGH_WATER) {
      this.full = true;
      this.pressure();
    }
    this.shipper.wake(this);
  }

  /** Resolves once every line added so far is acknowledged by JetStream. */
  flush(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  waiting(): number {
    return this.pending.length - this.head;
  }

  idle(): boolean {
    return this.waiting() === 0 && this.unacked === 0;
  }

  /** Takes up to `max` lines / `maxBytes` bytes (at least one line) into a message. */
  take(max: number, maxBytes: number): { lines: Line[]; bytes: number } {
    let n = 0;
    let bytes = 0;
    const available = this.waiting();
    while (n < available && n < max && (n === 0 || bytes < maxBytes)) {
      bytes += this.pending[this.head + n]!.line.length + LINE_OVERHEAD;
      n++;
    }
    const lines = this.pending.slice(this.head, this.head + n);
    this.head += n;
    if (this.head === this.pending.length) {
      this.pending = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.head); // compact now and then, not per message
      this.head = 0;
    }
    this.pendingBytes -= bytes;
    this.inflightBytes += bytes;
    this.unacked += n;
    return { lines, bytes };
  }

  acked(lines: number, bytes: number): void {
    this.unacked -= lines;
    this.inflightBytes -= bytes;
    if (this.full && this.pendingBytes + this.inflightBytes < LOW_WATER) {
      this.full = false;
      this.pressure();
    }
    this.settle();
  }

  settle(): void {
    if (this.idle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Tells the owner to pause or resume reading when that changed. */
  pressure(): void {
    const pause = this.full || this.shipper.backlogged;
    if (pause === this.paused) return;
    this.paused = pause;
    this.onPressure(pause);
  }

  /** The execution has ended: its reading is no longer paused or resumed. */
  close(): void {
    this.shipper.closed(this);
  }

  /** Lines not yet sent are given up (the worker is going away without NATS). */
  abort(): void {
    this.pending = [];
    this.head = 0;
    this.pendingBytes = 0;
    this.unacked = 0;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

export class LogShipper {
  /** Executions with lines waiting to be sent, in the order they first had some. */
  private readonly ready = new Set<ExecutionLog>();
  /** Executions still running, told when the backlog state changes. */
  private readonly running = new Set<ExecutionLog>();
  /** worker-manager is behind storing lines. */
  backlogged = false;
  private backlogTimer: NodeJS.Timeout | undefined;
  private readonly inflight: Array<Promise<void>> = [];
  private pumping = false;
  private scheduled = false;
  private aborted = false;
  private sent = 0;
  /** When the last message left (performance.now()). */
  private lastSentAt = -Infinity;
  private readonly encoder = new TextEncoder();
  private readonly full: PublishOutage;

  constructor(
    private readonly js: JetStreamClient,
    private readonly subject: string,
    private readonly workerId: string,
    private readonly logger: Logger,
    /** The largest message the server takes (its `max_payload`); a message over it fails every time. */
    private readonly maxPayload: () => number,
    private readonly outage = new PublishOutage(logger),
  ) {
    this.full = new PublishOutage(logger, STREAM_FULL);
  }

  open(executionId: string, onPressure: (pause: boolean) => void): ExecutionLog {
    const log = new ExecutionLog(this, executionId, onPressure);
    this.running.add(log);
    log.pressure();
    return log;
  }

  closed(log: ExecutionLog): void {
    this.running.delete(log);
  }

  /** worker-manager's `LogBacklog`: pause every execution's reading while it is behind. */
  setBacklog(behind: boolean): void {
    clearTimeout(this.backlogTimer);
    if (behind) this.backlogTimer = setTimeout(() => this.setBacklog(false), BACKLOG_SIGNAL_TTL_MS).unref();
    if (behind === this.backlogged) return;
    this.backlogged = behind;
    this.logger.info({ behind }, behind ? 'worker-manager is behind storing log lines: pausing the jobs\' output' : 'worker-manager caught up: reading the jobs\' output again');
    for (const log of this.running) log.pressure();
    if (!behind) this.kick();
  }

  /** Give up on lines not yet acknowledged (the worker is being torn down). */
  abort(): void {
    this.aborted = true;
    clearTimeout(this.backlogTimer);
  }

  wake(log: ExecutionLog): void {
    this.ready.add(log);
    if (this.pumping || this.scheduled) return;
    // the lines read in this turn of the event loop, of every execution, leave together
    this.scheduled = true;
    const send = () => {
      this.scheduled = false;
      this.kick();
    };
    const wait = this.lastSentAt + COALESCE_MS - performance.now();
    if (wait > 0) setTimeout(send, wait);
    else setImmediate(send);
  }

  private kick(): void {
    if (this.pumping || this.ready.size === 0) return;
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
      if (!this.aborted && this.sendable().length) this.kick();
    });
  }

  /**
   * The executions whose lines may go now. While worker-manager is behind, a flood read before the
   * pause stays here (in the stream it would queue ahead of every other job's lines); an execution
   * with a few lines waiting still sends them: they are what the other jobs print.
   */
  private sendable(): ExecutionLog[] {
    const ready = [...this.ready];
    return this.backlogged ? ready.filter((log) => log.waiting() <= HELD_BACK_OVER) : ready;
  }

  /** Sends what is waiting; returns once it is sent (not acknowledged), so that lines read while
   *  acks are on their way leave at once. */
  private async pump(): Promise<void> {
    while (this.ready.size && !this.aborted) {
      const batches: LogBatch[] = [];
      const taken: Array<{ log: ExecutionLog; lines: number; bytes: number }> = [];
      let lines = 0;
      let bytes = 0;
      const ready = this.sendable();
      if (ready.length === 0) break; // setBacklog(false) kicks the pump again
      for (const [i, log] of ready.entries()) {
        if (lines >= MAX_BATCH_LINES || bytes >= MAX_BATCH_BYTES) break;
        if (log.waiting() === 0) {
          this.ready.delete(log); // given up (aborted) since it had lines waiting
          continue;
        }
        // an even share of the room left for each execution still to come (a flood in one does
        // not hold the others' lines back)
        const share = Math.max(1, Math.floor((MAX_BATCH_LINES - lines) / (ready.length - i)));
        const part = log.take(share, MAX_BATCH_BYTES - bytes);
        batches.push({ execution_id: log.executionId, lines: part.lines });
        taken.push({ log, lines: part.lines.length, bytes: part.bytes });
        lines += part.lines.length;
        bytes += part.bytes;
        // the next message starts with the others: a job printing a flood does not hold theirs back
        this.ready.delete(log);
        if (log.waiting() > 0) this.ready.add(log);
      }
      if (batches.length === 0) continue;
      this.lastSentAt = performance.now();
      const sent: Promise<void> = Promise.all(this.encode(batches).map((m) => this.publishOne(m.payload, m.msgID))).then(() => {
        this.inflight.splice(this.inflight.indexOf(sent), 1);
        for (const t of taken) t.log.acked(t.lines, t.bytes);
      });
      this.inflight.push(sent);
      if (this.inflight.length >= WINDOW) await this.inflight[0];
    }
  }

  /** One or more payloads (halved while over the server's limit), each with a msgID of its own. */
  private encode(batches: LogBatch[], limit = this.maxPayload() - MESSAGE_HEADROOM): Array<{ payload: Uint8Array; msgID: string }> {
    const payload = this.encoder.encode(JSON.stringify({ worker_id: this.workerId, batches } satisfies LogMessage));
    const lineCount = batches.reduce((n, b) => n + b.lines.length, 0);
    if (payload.length > limit && lineCount > 1) {
      // halve by lines, keeping each execution's lines in order
      const [a, b] = splitBatches(batches, lineCount >> 1);
      return [...this.encode(a, limit), ...this.encode(b, limit)];
    }
    // msgID: a retried publish that did reach the stream is not stored twice
    return [{ payload, msgID: `${this.workerId}:${++this.sent}` }];
  }

  /** The first attempt is sent synchronously (keeping wire order); retries follow with backoff. */
  private publishOne(payload: Uint8Array, msgID: string): Promise<void> {
    const attempt = (n: number): Promise<void> => {
      const startedAt = performance.now();
      return this.js.publish(this.subject, payload, { msgID }).then(
        () => {
          this.outage.succeeded(startedAt);
          this.full.succeeded(startedAt);
        },
        async (err: unknown) => {
          if (this.aborted) return;
          // refused by a full stream: NATS answers, and the statuses still go out
          if (isStreamFull(err)) this.full.failed(err, startedAt);
          else this.outage.failed(err, startedAt);
          this.logger.debug({ error: (err as Error).message, msg_id: msgID, attempt: n }, 'log message publish failed; retrying');
          await delay(Math.min(1000, 25 * 2 ** Math.min(n, 6)));
          return attempt(n + 1);
        },
      );
    };
    return attempt(0);
  }
}

function splitBatches(batches: LogBatch[], firstLines: number): [LogBatch[], LogBatch[]] {
  const a: LogBatch[] = [];
  const b: LogBatch[] = [];
  let left = firstLines;
  for (const batch of batches) {
    if (left >= batch.lines.length) {
      a.push(batch);
      left -= batch.lines.length;
    } else if (left > 0) {
      a.push({ execution_id: batch.execution_id, lines: batch.lines.slice(0, left) });
      b.push({ execution_id: batch.execution_id, lines: batch.lines.slice(left) });
      left = 0;
    } else {
      b.push(batch);
    }
  }
  return [a, b];
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
