// Ships one execution's log lines to JetStream in order, in small batches. What was read in one
// turn of the event loop leaves at once as one batch (at most MAX_BATCH_LINES lines /
// MAX_BATCH_BYTES bytes), without waiting for the acknowledgement of the batch before it: up to
// WINDOW batches are in flight. Past HIGH_WATER bytes waiting, the owner is told to pause reading
// until the backlog falls under LOW_WATER.
import type { JetStreamClient } from '@nats-io/jetstream';
import type { LogBatch, LogStream } from '@hodei/types';
import type { Logger } from '@hodei/platform';

export const MAX_BATCH_LINES = 200;
export const MAX_BATCH_BYTES = 256 * 1024;
const MAX_PAYLOAD = 900 * 1024; // NATS max_payload is 1 MiB; stay clear of it
const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 4 * 1024 * 1024;
const LINE_OVERHEAD = 80; // seq, stream, timestamp and JSON punctuation
/**
 * Batches in flight at once. Waiting for each ack before the next batch (a window of 1) held a
 * line that came while an ack was on its way for that round trip: with 50 jobs writing, the ack
 * took milliseconds and so did every line. They leave in order on the one connection; a publish
 * that is retried can land after later ones, which worker-manager accepts (it orders by seq).
 */
const WINDOW = 8;

type Line = LogBatch['lines'][number];

export class LogShipper {
  private pending: Line[] = [];
  /** Index of the first line not yet taken into a batch (avoids shifting a long array per batch). */
  private head = 0;
  private pendingBytes = 0;
  private inflightBytes = 0;
  private pumping = false;
  private scheduled = false;
  private paused = false;
  private aborted = false;
  private idleWaiters: Array<() => void> = [];
  /** Batches sent and not yet acknowledged, oldest first. */
  private readonly inflight: Array<Promise<void>> = [];
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly js: JetStreamClient,
    private readonly subject: string,
    private readonly executionId: string,
    private readonly logger: Logger,
    private readonly onPressure: (pause: boolean) => void,
  ) {}

  add(seq: number, stream: LogStream, line: string, timestamp: string): void {
    this.pending.push({ seq, stream, line, timestamp });
    this.pendingBytes += line.length + LINE_OVERHEAD;
    if (!this.paused && this.pendingBytes + this.inflightBytes > HIGH_WATER) {
      this.paused = true;
      this.onPressure(true);
    }
    if (!this.pumping && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.kick();
      });
    }
  }

  /** Resolves once every line added so far is acknowledged by JetStream. */
  flush(): Promise<void> {
    if (this.idle()) return Promise.resolve();
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.kick();
    return idle;
  }

  private idle(): boolean {
    return this.pending.length === this.head && !this.pumping && this.inflight.length === 0;
  }

  private settle(): void {
    if (this.idle() || this.aborted) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Give up on lines not yet acknowledged (the worker is being torn down). */
  abort(): void {
    this.aborted = true;
  }

  private kick(): void {
    if (this.pumping || this.pending.length === this.head) return;
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
      if (this.pending.length > this.head && !this.aborted) return this.kick();
      this.settle();
    });
  }

  /** Sends what is pending; returns once it is all sent (not acknowledged), so that lines read
   *  while acks are on their way leave at once in the next pump. */
  private async pump(): Promise<void> {
    // Up to WINDOW batches in flight; their publishes leave in order on the one connection.
    const inflight = this.inflight;
    while (this.pending.length > this.head && !this.aborted) {
      let n = 0;
      let bytes = 0;
      const available = this.pending.length - this.head;
      while (n < available && n < MAX_BATCH_LINES && (n === 0 || bytes < MAX_BATCH_BYTES)) {
        bytes += this.pending[this.head + n]!.line.length + LINE_OVERHEAD;
        n++;
      }
      const lines = this.pending.slice(this.head, this.head + n);
      this.head += n;
      if (this.head === this.pending.length) {
        this.pending = [];
        this.head = 0;
      } else if (this.head > 4096 && this.head * 2 > this.pending.length) {
        this.pending = this.pending.slice(this.head); // compact now and then, not per batch
        this.head = 0;
      }
      this.pendingBytes -= bytes;
      this.inflightBytes += bytes;
      const sent: Promise<void> = Promise.all(this.encode(lines).map((m) => this.publishOne(m.payload, m.msgID, m.first))).then(() => {
        this.inflightBytes -= bytes;
        inflight.splice(inflight.indexOf(sent), 1);
        if (this.paused && this.pendingBytes + this.inflightBytes < LOW_WATER) {
          this.paused = false;
          this.onPressure(false);
        }
        this.settle();
      });
      inflight.push(sent);
      if (inflight.length >= WINDOW) await inflight[0];
    }
  }

  /** One or more payloads (split while over MAX_PAYLOAD), in seq order. */
  private encode(lines: Line[]): Array<{ payload: Uint8Array; msgID: string; first: number }> {
    const payload = this.encoder.encode(JSON.stringify({ execution_id: this.executionId, lines } satisfies LogBatch));
    if (payload.length > MAX_PAYLOAD && lines.length > 1) {
      const half = lines.length >> 1;
      return [...this.encode(lines.slice(0, half)), ...this.encode(lines.slice(half))];
    }
    const first = lines[0]!.seq;
    const last = lines[lines.length - 1]!.seq;
    // msgID: a retried publish that did reach the stream is not stored twice.
    return [{ payload, msgID: `${this.executionId}:${first}-${last}`, first }];
  }

  /** The first attempt is sent synchronously (keeping wire order); retries follow with backoff. */
  private publishOne(payload: Uint8Array, msgID: string, first: number): Promise<void> {
    const attempt = (n: number): Promise<void> =>
      this.js.publish(this.subject, payload, { msgID }).then(
        () => undefined,
        async (err: unknown) => {
          if (this.aborted) return;
          if (n === 0 || n % 20 === 0) {
            this.logger.warn({ err, execution_id: this.executionId, first_seq: first, attempt: n }, 'log batch publish failed; retrying');
          }
          await delay(Math.min(1000, 25 * 2 ** Math.min(n, 6)));
          return attempt(n + 1);
        },
      );
    return attempt(0);
  }
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
