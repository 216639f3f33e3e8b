// Live log fan-out. Lines reach subscribers as soon as a batch arrives (before it is stored), and
// stay in `pending` until their insert commits, so a subscriber that reads history from Postgres
// and then goes live never misses a line that fell between the two. Every subscriber sends lines
// strictly in seq order, each once: late or redelivered lines below its position are dropped,
// lines ahead of a gap wait in a small buffer.
import type { Pool } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { readPage } from '../store/logs.js';
import type { SseConnection } from '@hodei/platform';
import { logFrame } from './sse.js';

export interface FinalInfo {
  status: string;
  exit_code: number | null;
  signal: string | null;
  message: string | null;
  duration_ms: number | null;
  last_seq: number;
}

/** What a stream's `completed` event says about a finished execution (`last_seq` tells when to send it). */
export const finalOf = (row: Omit<FinalInfo, 'last_seq'> & { last_seq: number | null }): FinalInfo => ({
  status: row.status,
  exit_code: row.exit_code,
  signal: row.signal,
  message: row.message,
  duration_ms: row.duration_ms,
  last_seq: row.last_seq ?? 0,
});

interface Framed {
  line: LogLine;
  frame: string;
}

const PAGE = 2000;
/** A subscriber holding more out-of-order lines than this drops them and re-reads from the store. */
const MAX_BUFFER = 20_000;
/** A subscriber whose socket holds more than this unsent switches to reading from the store. */
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
/**
 * After the final status and a read of the store, how long to wait for lines still missing before
 * reading it again; the stream completes without them only once a whole wait brought none (they are
 * not coming), after sending the stored lines past them.
 */
const FINAL_GRACE_MS = 10_000;
/**
 * Lines held behind a gap this long send the subscriber back to the store (then twice as long, up
 * to GAP_WAIT_MAX_MS, while the gap stays). The missing lines may have been stored by another
 * replica, which took them from the stream before this subscriber registered: they never come here live.
 */
const GAP_WAIT_MS = 250;
const GAP_WAIT_MAX_MS = 4000;
/**
 * History pages read at once for every stream together. The rest of the pool (10) stays free for
 * the API, /health and the log ingest: 200 clients reading a long history took every connection,
 * and /health, waiting over 2 s for one, answered 503.
 */
const HISTORY_READS = 4;

/** Batches are kept whole (not line by line): cheap to add and to drop once stored. */
export interface PendingBatch {
  lines: LogLine[];
  framed?: Framed[];
}

class Channel {
  readonly pending = new Set<PendingBatch>();
  readonly subs = new Set<LogSubscriber>();
}

function framedOf(b: PendingBatch): Framed[] {
  return (b.framed ??= b.lines.map((line) => ({ line, frame: logFrame(line) })));
}

export class LogSubscriber {
  nextSeq: number;
  private catchingUp = true;
  private readonly buffer = new Map<number, Framed>();
  private overflow = false;
  private final: FinalInfo | null = null;
  private finalTimer: NodeJS.Timeout | undefined;
  private gapTimer: NodeJS.Timeout | undefined;
  private gapWaitMs = GAP_WAIT_MS;
  /**
   * The first stored line past the gap the last history read stopped at (0: it stopped at the end).
   * Those lines were stored before this subscriber looked, so they never come to it live: once the
   * missing ones arrive, or while they do not, it reads the store again.
   */
  private storedPast = 0;
  /** Asked to read the store while a read was under way, which may have been too early. */
  private readAgain = false;
  done = false;

  constructor(
    private readonly hub: LogHub,
    private readonly channel: Channel,
    readonly executionId: string,
    private readonly conn: SseConnection,
    fromSeq: number,
  ) {
    this.nextSeq = fromSeq;
  }

  /** Called by the hub with live lines (any order, possibly repeated). */
  deliver(lines: Framed[]): void {
    if (this.done) return;
    let out = '';
    for (const f of lines) {
      const seq = f.line.seq;
      if (seq < this.nextSeq) continue;
      if (this.catchingUp || seq !== this.nextSeq) {
        this.hold(f);
        continue;
      }
      out += f.frame;
      this.nextSeq++;
    }
    if (!this.catchingUp && this.buffer.size) out += this.takeBuffered();
    if (out) this.conn.write(out);
    if (!this.catchingUp && this.storedPast && this.nextSeq >= this.storedPast) {
      this.readStore(); // the gap is filled: what follows it is in the store
      return;
    }
    if (!this.catchingUp && this.conn.backlog > MAX_BACKLOG_BYTES) {
      // a slow client: stop queueing in memory, continue from the store once it caught up
      this.catchingUp = true;
      void this.conn.drained().then(() => this.catchUp());
      return;
    }
    if (this.overflow && !this.catchingUp) void this.catchUp();
    else this.watchGap();
    this.checkComplete();
  }

  setFinal(final: FinalInfo): void {
    if (this.final) return;
    this.final = final;
    this.checkComplete();
    // a final status is recorded once its lines are stored (or not coming): the rest is in the store,
    // and the wait for lines still missing starts after that read (see the end of catchUp)
    if (!this.done) this.readStore();
  }

  /** The store read after the final status left lines missing: wait for them, then complete. */
  private awaitLast(): void {
    if (this.done || !this.final || this.finalTimer) return;
    let seen = this.nextSeq;
    const arm = () => {
      this.finalTimer = setTimeout(() => {
        if (this.catchingUp) return arm();
        void this.catchUp().then(async () => {
          if (this.done) return;
          if (this.nextSeq > seen || this.hub.hasPending(this.executionId)) {
            seen = this.nextSeq; // lines still arrive (a backlog): keep waiting for the rest
            return arm();
          }
          // the missing lines are not coming: the stored ones past them are still the job's output
          while (this.storedPast && !this.done) {
            this.nextSeq = this.storedPast;
            await this.catchUp();
          }
          this.complete();
        });
      }, this.hub.finalGraceMs);
      this.finalTimer.unref();
    };
    arm();
  }

  /**
   * History: repeated until a pass makes no progress. Each pass snapshots `pending` before reading
   * the store, so a line is always in one of them (it leaves `pending` only after its insert committed).
   */
  async catchUp(): Promise<void> {
    this.catchingUp = true;
    try {
      for (;;) {
        this.overflow = false;
        this.readAgain = false;
        this.storedPast = 0;
        const start = this.nextSeq;
        const snapshot = [...this.channel.pending];
        for (;;) {
          const page = await this.hub.readHistory(this.executionId, this.nextSeq - 1, PAGE);
          if (this.done) return;
          let out = '';
          let gap = false;
          for (const line of page) {
            if (line.seq < this.nextSeq) continue;
            if (line.seq !== this.nextSeq) {
              gap = true;
              this.storedPast = line.seq;
              break;
            }
            out += logFrame(line);
            this.nextSeq++;
          }
          if (out && !this.conn.write(out)) await this.conn.drained();
          if (this.done || this.conn.closed) return;
          if (gap || page.length < PAGE) break;
        }
        for (const b of snapshot) {
          if (b.lines.length && b.lines[b.lines.length - 1]!.seq < this.nextSeq) continue;
          for (const f of framedOf(b)) if (f.line.seq >= this.nextSeq) this.buffer.set(f.line.seq, f);
        }
        const rest = this.takeBuffered();
        if (rest) this.conn.write(rest);
        if (this.nextSeq === start && !this.overflow && !this.readAgain) break;
      }
    } finally {
      this.catchingUp = false;
    }
    const rest = this.takeBuffered();
    if (rest) this.conn.write(rest);
    this.watchGap();
    this.checkComplete();
    this.awaitLast();
  }

  /** Reads the store now, or once more after the read under way. */
  private readStore(): void {
    if (this.catchingUp) this.readAgain = true;
    else void this.catchUp();
  }

  /** Lines wait behind a missing one: look in the store for it soon, unless it arrives first. */
  private watchGap(): void {
    if (this.catchingUp || this.done) return;
    if (this.buffer.size === 0 && !this.storedPast) {
      clearTimeout(this.gapTimer);
      this.gapTimer = undefined;
      this.gapWaitMs = GAP_WAIT_MS;
      return;
    }
    if (this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      if (this.catchingUp || this.done || (this.buffer.size === 0 && !this.storedPast)) return;
      this.gapWaitMs = Math.min(this.gapWaitMs * 2, GAP_WAIT_MAX_MS);
      void this.catchUp();
    }, this.gapWaitMs);
    this.gapTimer.unref();
  }

  private hold(f: Framed): void {
    if (this.overflow) return;
    this.buffer.set(f.line.seq, f);
    if (this.buffer.size > MAX_BUFFER) {
      this.buffer.clear();
      this.overflow = true;
    }
  }

  private takeBuffered(): string {
    let out = '';
    for (let f = this.buffer.get(this.nextSeq); f; f = this.buffer.get(this.nextSeq)) {
      this.buffer.delete(this.nextSeq);
      out += f.frame;
      this.nextSeq++;
    }
    if (this.buffer.size) for (const seq of this.buffer.keys()) if (seq < this.nextSeq) this.buffer.delete(seq);
    return out;
  }

  private checkComplete(): void {
    if (!this.done && !this.catchingUp && this.final && this.nextSeq > this.final.last_seq) this.complete();
  }

  private complete(): void {
    if (this.done || !this.final) return;
    const { status, exit_code, signal, message, duration_ms } = this.final;
    this.conn.event('completed', { status, exit_code, signal, message, duration_ms });
    this.close();
    this.conn.end();
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.finalTimer);
    clearTimeout(this.gapTimer);
    this.hub.remove(this);
  }

  get chan(): Channel {
    return this.channel;
  }
}

export class LogHub {
  private readonly channels = new Map<string, Channel>();
  private readonly storeWaiters = new Map<string, Set<() => void>>();
  private subscribers = 0;
  private reading = 0;
  private readonly readQueue: (() => void)[] = [];
  onSubscribersChanged: (delta: number) => void = () => undefined;

  constructor(
    readonly db: Pool,
    readonly finalGraceMs = FINAL_GRACE_MS,
  ) {}

  /** A page of stored lines, read once one of the HISTORY_READS is free. */
  async readHistory(executionId: string, afterSeq: number, limit: number): Promise<LogLine[]> {
    if (this.reading < HISTORY_READS) this.reading++;
    else await new Promise<void>((resolve) => this.readQueue.push(resolve));
    try {
      return await readPage(this.db, executionId, afterSeq, limit);
    } finally {
      const next = this.readQueue.shift();
      if (next) next(); // the slot passes on as it is
      else this.reading--;
    }
  }

  /**
   * Fans a batch out at once and keeps it in memory until `persisted`; frames are only built for
   * a subscriber that has not had all of its lines yet (usually they came first on the fast path).
   */
  publish(executionId: string, lines: LogLine[]): PendingBatch {
    const ch = this.channel(executionId);
    const batch: PendingBatch = { lines };
    ch.pending.add(batch);
    if (ch.subs.size) {
      let last = 0;
      for (const l of lines) if (l.seq > last) last = l.seq;
      for (const sub of ch.subs) if (sub.nextSeq <= last) sub.deliver(framedOf(batch));
    }
    return batch;
  }

  /**
   * Lines seen on the core NATS subject (the fast path, no pull round trip): delivered to current
   * subscribers only. The same batch arrives again from the durable consumer, which is the one
   * that keeps it pending until stored; subscribers drop the repeat by seq.
   */
  live(executionId: string, lines: LogLine[]): void {
    const ch = this.channels.get(executionId);
    if (!ch || ch.subs.size === 0) return;
    const framed = framedOf({ lines });
    for (const sub of ch.subs) sub.deliver(framed);
  }

  /** Lines of this execution received but not stored yet. */
  hasPending(executionId: string): boolean {
    return (this.channels.get(executionId)?.pending.size ?? 0) > 0;
  }

  /** Someone follows the logs of some execution here. */
  listening(): boolean {
    return this.subscribers > 0;
  }

  /** The insert of this batch committed: it can leave memory. */
  persisted(executionId: string, batch: PendingBatch): void {
    const ch = this.channels.get(executionId);
    if (!ch) return;
    ch.pending.delete(batch);
    this.gc(executionId, ch);
    const waiters = this.storeWaiters.get(executionId);
    if (waiters) for (const wake of waiters) wake();
  }

  /** The insert of this batch failed: it leaves memory and comes again with its redelivery. */
  discard(executionId: string, batch: PendingBatch): void {
    const ch = this.channels.get(executionId);
    if (!ch) return;
    ch.pending.delete(batch);
    this.gc(executionId, ch);
  }

  /** Resolves when the next batch of this execution is stored, or after `ms` (whichever is first). */
  nextStored(executionId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let waiters = this.storeWaiters.get(executionId);
      if (!waiters) this.storeWaiters.set(executionId, (waiters = new Set()));
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0 && this.storeWaiters.get(executionId) === waiters) this.storeWaiters.delete(executionId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      waiters.add(wake);
    });
  }

  /** Registers a subscriber; its position and history are set up by the caller via `start`. */
  subscribe(executionId: string, conn: SseConnection, fromSeq: number): LogSubscriber {
    const ch = this.channel(executionId);
    const sub = new LogSubscriber(this, ch, executionId, conn, fromSeq);
    ch.subs.add(sub);
    this.subscribers++;
    this.onSubscribersChanged(1);
    conn.onClose(() => sub.close());
    return sub;
  }

  /** Highest seq held in memory for an execution (not yet stored), 0 when none. */
  pendingMax(executionId: string): number {
    let max = 0;
    const ch = this.channels.get(executionId);
    if (ch) for (const b of ch.pending) for (const l of b.lines) if (l.seq > max) max = l.seq;
    return max;
  }

  finish(executionId: string, final: FinalInfo): void {
    const ch = this.channels.get(executionId);
    if (ch) for (const sub of [...ch.subs]) sub.setFinal(final);
  }

  remove(sub: LogSubscriber): void {
    const ch = sub.chan;
    if (ch.subs.delete(sub)) {
      this.subscribers--;
      this.onSubscribersChanged(-1);
    }
    this.gc(sub.executionId, ch);
  }

  closeAll(): void {
    for (const ch of this.channels.values()) for (const sub of [...ch.subs]) sub.close();
  }

  private channel(executionId: string): Channel {
    let ch = this.channels.get(executionId);
    if (!ch) {
      ch = new Channel();
      this.channels.set(executionId, ch);
    }
    return ch;
  }

  private gc(executionId: string, ch: Channel): void {
    if (ch.subs.size === 0 && ch.pending.size === 0 && this.channels.get(executionId) === ch) this.channels.delete(executionId);
  }
}
