// Durable JetStream consumers: log messages (each execution's lines fanned out at once, stored in
// coalesced inserts, the message acked after the insert) and execution status events (applied side
// by side across executions, in order within one).
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/nats-core';
import { decodeJson, encodeJson, ensureConsumer, FailureLog, InProgress, withConsumedSpan, type ServiceContext } from '@hodei/platform';
import { ExecutionStatusEvent, Id, type LogBacklog, type LogLine } from '@hodei/types';
import type { Executions } from './executions.js';
import type { LogHub, PendingBatch } from './live/log-hub.js';
import type { WmMetrics } from './metrics.js';
import { insertLines } from './store/logs.js';
import { settledWithin } from './wait.js';

/** At most this many lines per INSERT; more waiting lines go in the next one. */
const MAX_INSERT_LINES = 5000;
/** Stop pulling while this many lines wait for their insert (bounds memory). */
const MAX_BUFFERED_LINES = 40_000;
/** Inserts running at once under a flood of lines (each on its own pooled connection). */
const INSERT_CONCURRENCY = 3;
/**
 * The least time between the starts of two inserts while less than a statement's worth waits.
 * Lines that keep coming otherwise went in back to back, a statement (and a commit) every 2-3 ms
 * for a few lines each; live subscribers get lines before they are stored, so none waits for this.
 */
const INSERT_COALESCE_MS = 10;
/** Executions whose status events are being applied at once (a final one may wait for its last log lines). */
const MAX_FINALS_IN_FLIGHT = 200;
/**
 * Log messages not stored yet (waiting in the stream, or delivered here and not inserted) above
 * which workers are told to stop reading their jobs' output (`LogBacklog`), and under which they
 * are told to go on. A full message is 200 lines, so the high mark is about a second and a half of
 * inserts: a job printing faster than lines can be stored is slowed to that pace, instead of
 * queueing minutes of lines ahead of every other job's. The consumer's count is asked for every
 * BACKLOG_CHECK_MS: the one a delivered message carries is as old as the messages buffered here
 * ahead of it, and a flood overshot the mark by thousands of messages meanwhile.
 */
const BACKLOG_HIGH = 600;
const BACKLOG_LOW = 300;
const BACKLOG_CHECK_MS = 100;
const BACKLOG_REPEAT_MS = 1000;
/**
 * How often the logs stream's size is checked. Over `logStreamKeepBytes`, what is stored in Postgres
 * leaves it (purged below the consumer's ack floor, with whatever else is below it: nothing but
 * worker-manager reads this stream); kept for the stream's whole max_age, one flood of a job took
 * gigabytes of disk a second time. Not at every check: a purge costs nats-server enough to delay
 * the log messages around it (50 jobs logging: line → SSE p50 15 → 24 ms with one every 5 s).
 */
const PURGE_INTERVAL_MS = 5000;
const LOGS_CONSUMER = 'worker-manager-logs';

interface Batch {
  execution_id: string;
  lines: LogLine[];
}

interface Buffered {
  msg: JsMsg;
  batches: Batch[];
  pending: PendingBatch[];
  lines: number;
}

const MAX_SEQ = 2 ** 31 - 1;
/** A time PostgreSQL reads as given (what workers send: `Date#toISOString`). */
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$/;

const validLine = (l: Partial<LogLine> | null | undefined): l is LogLine =>
  !!l && Number.isInteger(l.seq) && l.seq! >= 1 && l.seq! <= MAX_SEQ && typeof l.line === 'string' && typeof l.timestamp === 'string' && (l.stream === 'stdout' || l.stream === 'stderr');

/**
 * One execution's batch as it can be stored, or null when it names no execution. A line that cannot
 * be stored (no whole seq, no stream) is left out, and a time PostgreSQL would refuse becomes the
 * time it was received: one bad line would otherwise fail the insert of every line stored with it,
 * again at each redelivery. Cheap: a million lines go through here, no schema walk per line.
 */
function storableBatch(v: Partial<Batch> | null | undefined, receivedAt: () => string): Batch | null {
  if (!v || !Id.safeParse(v.execution_id).success || !Array.isArray(v.lines)) return null;
  const lines = v.lines.every((l) => validLine(l)) ? v.lines : v.lines.filter(validLine);
  let lastTime = '';
  for (const l of lines) {
    if (l.timestamp === lastTime) continue;
    if (!ISO_TIME.test(l.timestamp) || Number.isNaN(Date.parse(l.timestamp))) l.timestamp = receivedAt();
    lastTime = l.timestamp;
  }
  return { execution_id: v.execution_id!, lines };
}

/**
 * A worker's `LogMessage` (batches of several executions) or a single `LogBatch`, as far as it can
 * be stored; null when it is not one at all. `dropped`: batches that name no execution.
 */
function parseLogMessage(data: Uint8Array): { batches: Batch[]; dropped: number } | null {
  const v = decodeJson(data) as { batches?: unknown } & Partial<Batch>;
  let now: string | undefined;
  const receivedAt = () => (now ??= new Date().toISOString());
  const given = v && Array.isArray(v.batches) ? (v.batches as Partial<Batch>[]) : [v];
  const batches: Batch[] = [];
  for (const b of given) {
    const batch = storableBatch(b, receivedAt);
    if (batch) batches.push(batch);
  }
  if (batches.length === 0 && given.length > 0) return null;
  return { batches, dropped: given.length - batches.length };
}

/** Acks, or naks for a redelivery in a second; a connection already closing (work left at the
 *  shutdown deadline) takes neither, and the message comes again after its ack wait. */
function settle(msg: JsMsg, how: 'ack' | 'nak'): void {
  try {
    if (how === 'ack') msg.ack();
    else msg.nak(1000);
  } catch {
    // closing
  }
}

export class Consumers {
  private logMessages: ConsumerMessages | undefined;
  private statusMessages: ConsumerMessages[] = [];
  private loops: Promise<void>[] = [];
  private liveSub: Subscription | undefined;
  private readonly chains = new Map<string, Promise<void>>();
  private buffered: Buffered[] = [];
  /** Delivered messages not acked or nak'd yet (log lines buffered or being inserted, status events
   *  waiting or being applied), with when they were delivered or last said to be in progress. */
  private readonly unsettled: InProgress;
  private bufferedLines = 0;
  private flushers = 0;
  /** When the last insert started (performance.now()). */
  private lastInsertAt = -Infinity;
  private readonly storing: FailureLog;
  private readonly applying: FailureLog;
  private flushed: Promise<void>[] = [];
  private roomWaiters: (() => void)[] = [];
  private backlog = 0;
  /** The logs consumer's ack floor (stream sequence) at the last backlog check. */
  private ackFloor = 0;
  private behindTimer: NodeJS.Timeout | undefined;
  private backlogCheck: NodeJS.Timeout | undefined;
  private checkingBacklog = false;
  private purgeTimer: NodeJS.Timeout | undefined;
  /** The stream's messages below this sequence are purged. */
  private purgedBelow = 0;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly hub: LogHub,
    private readonly executions: Executions,
    private readonly metrics: WmMetrics,
  ) {
    this.unsettled = new InProgress(ctx.config.ackWaitMs);
    this.storing = new FailureLog(ctx.logger, 'storing log lines', 'they will be redelivered');
    this.applying = new FailureLog(ctx.logger, 'applying status events', 'they will be redelivered');
  }

  async start(): Promise<void> {
    const s = this.ctx.bus.subjects;
    const bus = this.ctx.bus;
    const { ackWaitMs } = this.ctx.config;
    const logs = await ensureConsumer(bus, s.logsStream, { durable: LOGS_CONSUMER, filter: s.logsAll, maxAckPending: 10_000, ackWaitMs });
    // statuses of executions of jobs, and of those without one (their own subjects: see Subjects)
    const status = await ensureConsumer(bus, s.eventsStream, { durable: 'worker-manager-status', filter: s.executionStatusAll, ackWaitMs });
    const adhocStatus = await ensureConsumer(bus, s.eventsStream, { durable: 'worker-manager-status-adhoc', filter: s.executionStatusAdhocAll, ackWaitMs });
    this.logMessages = await logs.consume({ max_messages: 100 });
    this.statusMessages = [await status.consume({ max_messages: 200 }), await adhocStatus.consume({ max_messages: 200 })];
    this.loops.push(this.logLoop(this.logMessages), ...this.statusMessages.map((m) => this.statusLoop(m)));
    this.purgeTimer = setInterval(() => void this.purgeStored(), PURGE_INTERVAL_MS).unref();
    this.backlogCheck = setInterval(() => void this.checkBacklog(), BACKLOG_CHECK_MS).unref();
    // fast path for live subscribers: the same messages on core NATS, parsed only when someone listens
    this.liveSub = this.ctx.bus.nc.subscribe(s.logsAll, {
      callback: (err, msg) => {
        if (err || !this.hub.listening()) return;
        try {
          for (const batch of parseLogMessage(msg.data)?.batches ?? []) this.hub.live(batch.execution_id, batch.lines);
        } catch {
          // malformed: the durable consumer reports it
        }
      },
    });
  }

  /** Stops pulling and waits for what was pulled to be stored and applied, until `deadline`
   *  (epoch ms) at the latest: what is not acknowledged then is delivered again to the next run. */
  async stop(deadline = Infinity): Promise<void> {
    clearInterval(this.behindTimer);
    clearInterval(this.backlogCheck);
    clearInterval(this.purgeTimer);
    this.unsettled.stop();
    this.liveSub?.unsubscribe();
    const closed = (async () => {
      await this.logMessages?.close().catch(() => undefined);
      for (const m of this.statusMessages) await m.close().catch(() => undefined);
      await Promise.allSettled(this.loops);
      await Promise.allSettled(this.flushed);
    })();
    if (!(await settledWithin(closed, deadline - Date.now()))) {
      this.ctx.logger.warn({ buffered_lines: this.bufferedLines, executions: this.chains.size }, 'log lines or status events still being handled at the shutdown deadline: they will be delivered again');
    }
  }

  private async logLoop(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      let parsed: ReturnType<typeof parseLogMessage> = null;
      try {
        parsed = parseLogMessage(msg.data);
      } catch {
        parsed = null;
      }
      if (!parsed) {
        this.ctx.logger.warn({ subject: msg.subject }, 'dropping a malformed log message');
        msg.term(); // no reason: nats-server 2.9 takes '+TERM <reason>' for no answer and delivers it again at every ack wait, holding the ack floor
        continue;
      }
      const { batches, dropped } = parsed;
      if (dropped) this.ctx.logger.warn({ subject: msg.subject, dropped }, 'dropping log batches that name no execution; storing the rest of the message');
      const pending = batches.map((b) => this.hub.publish(b.execution_id, b.lines));
      const lines = batches.reduce((n, b) => n + b.lines.length, 0);
      this.buffered.push({ msg, batches, pending, lines });
      this.unsettled.add(msg);
      this.bufferedLines += lines;
      // One insert at a time while a statement's worth does not wait (what comes meanwhile joins
      // the next one); more side by side only for a flood. Fifty jobs printing 100 lines a second
      // each otherwise cost an insert per message, three at a time.
      if (this.flushers === 0 || (this.flushers < INSERT_CONCURRENCY && this.bufferedLines >= MAX_INSERT_LINES)) {
        this.flushers++;
        // after this turn of the event loop: the messages delivered with this one join its insert
        const p = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flushAll());
        this.flushed.push(p);
        void p.finally(() => (this.flushed = this.flushed.filter((x) => x !== p)));
      }
      if (this.bufferedLines > MAX_BUFFERED_LINES) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  /** Removes from the logs stream the messages whose lines are stored (acknowledged, in order). */
  private async purgeStored(): Promise<void> {
    const { jsm, subjects } = this.ctx.bus;
    const floor = this.ackFloor; // as the backlog check saw it last
    if (floor + 1 <= this.purgedBelow) return;
    try {
      if ((await jsm.streams.info(subjects.logsStream)).state.bytes <= this.ctx.config.logStreamKeepBytes) return;
      // no subject filter: with one, nats-server 2.9 also forgets the consumer's pending
      // redeliveries (a nak'd message, whose insert failed, never came back)
      await jsm.streams.purge(subjects.logsStream, { seq: floor + 1 });
      this.purgedBelow = floor + 1;
    } catch (err) {
      this.ctx.logger.warn({ err }, 'could not purge stored log messages from the stream; trying again later');
    }
  }

  private async checkBacklog(): Promise<void> {
    if (this.checkingBacklog) return;
    this.checkingBacklog = true;
    try {
      const info = await this.ctx.bus.jsm.consumers.info(this.ctx.bus.subjects.logsStream, LOGS_CONSUMER);
      this.ackFloor = info.ack_floor.stream_seq;
      this.noteBacklog(info.num_pending + info.num_ack_pending);
    } catch {
      // NATS away: the workers resume on their own once the repeats stop
    } finally {
      this.checkingBacklog = false;
    }
  }

  /** Tells the workers when the messages not stored yet cross BACKLOG_HIGH or BACKLOG_LOW. */
  private noteBacklog(pending: number): void {
    this.backlog = pending;
    this.metrics.logBacklog.set(pending);
    if (!this.behindTimer && pending > BACKLOG_HIGH) {
      this.behindTimer = setInterval(() => this.signalBacklog(true), BACKLOG_REPEAT_MS);
      this.signalBacklog(true);
    } else if (this.behindTimer && pending < BACKLOG_LOW) {
      clearInterval(this.behindTimer);
      this.behindTimer = undefined;
      this.signalBacklog(false);
    }
  }

  private signalBacklog(behind: boolean): void {
    this.ctx.bus.nc.publish(this.ctx.bus.subjects.logsBacklog, encodeJson({ behind, pending: this.backlog } satisfies LogBacklog));
  }

  /** Inserts whatever arrived, as few statements as possible, until nothing waits. */
  private async flushAll(): Promise<void> {
    try {
      while (this.buffered.length) {
        const wait = this.lastInsertAt + INSERT_COALESCE_MS - performance.now();
        if (wait > 0 && this.bufferedLines < MAX_INSERT_LINES) await new Promise((resolve) => setTimeout(resolve, wait));
        this.lastInsertAt = performance.now();
        const take: Buffered[] = [];
        let n = 0;
        while (this.buffered.length && (n === 0 || n + this.buffered[0]!.lines <= MAX_INSERT_LINES)) {
          const b = this.buffered.shift()!;
          take.push(b);
          n += b.lines;
        }
        let inserted: number;
        try {
          inserted = await insertLines(this.ctx.db, take.flatMap((b) => b.batches), take.some((b) => b.msg.redelivered));
        } catch (err) {
          this.storing.failed(err, { lines: n });
          for (const { msg, batches, pending } of take) {
            this.unsettled.delete(msg);
            settle(msg, 'nak');
            batches.forEach((b, k) => this.hub.discard(b.execution_id, pending[k]!)); // they come again
          }
          this.release(n);
          continue;
        }
        for (const { msg, batches, pending } of take) {
          this.unsettled.delete(msg);
          settle(msg, 'ack');
          batches.forEach((b, k) => this.hub.persisted(b.execution_id, pending[k]!));
        }
        this.storing.worked();
        this.metrics.linesIngested.inc(inserted);
        this.release(n);
      }
    } finally {
      this.flushers--;
    }
  }

  private release(n: number): void {
    this.bufferedLines -= n;
    if (this.bufferedLines <= MAX_BUFFERED_LINES) for (const w of this.roomWaiters.splice(0)) w();
  }

  private async statusLoop(messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      let event: ExecutionStatusEvent;
      try {
        event = ExecutionStatusEvent.parse(decodeJson(msg.data));
      } catch (err) {
        this.ctx.logger.warn({ err, subject: msg.subject }, 'dropping a malformed status event');
        msg.term(); // no reason, as above
        continue;
      }
      const id = event.execution_id;
      this.unsettled.add(msg);
      const before = this.chains.get(id);
      // Each event costs database round trips (a final one may also wait a moment for its last log
      // lines): executions go on side by side, the events of one execution queue up behind each
      // other. Applying `running` events one by one here held every execution's events behind
      // them (measured: 300 short jobs were bound by this loop at ~75 jobs/s).
      const work = (before ?? Promise.resolve()).then(() => this.applyAndAck(msg, event));
      this.chains.set(id, work);
      void work.finally(() => {
        if (this.chains.get(id) === work) this.chains.delete(id);
      });
      if (this.chains.size >= MAX_FINALS_IN_FLIGHT) await Promise.race(this.chains.values());
    }
    await Promise.allSettled(this.chains.values());
  }

  private async applyAndAck(msg: JsMsg, event: ExecutionStatusEvent): Promise<void> {
    try {
      await withConsumedSpan('worker-manager execution.status', msg, () => this.executions.apply(event));
      settle(msg, 'ack');
      this.applying.worked();
    } catch (err) {
      this.applying.failed(err, { execution_id: event.execution_id });
      settle(msg, 'nak');
    } finally {
      this.unsettled.delete(msg);
    }
  }
}
