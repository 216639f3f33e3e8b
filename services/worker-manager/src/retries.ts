// Retries: a `failed` or `lost` execution whose spec allows another attempt (attempt <= max_retries)
// gets a new execution (attempt + 1, retry_of) that waits out retry_backoff_seconds × 2^(attempt-1)
// (±20 % jitter, capped at an hour) and is then announced to the scheduler, which prefers a worker
// other than the ones earlier attempts ran on. The wait is in the database (retry_due_at), so a
// restart of this service does not lose it: start() arms the timer for whatever is due. A new
// execution is recorded due to be announced again after ANNOUNCE_GRACE_MS, so one whose queued event
// was never sent (a crash, a database failure when its publish was not confirmed) is announced then;
// one whose publish NATS did not confirm is due at once; one whose publish NATS confirmed is due no
// more (else each one still waiting for a worker after the grace was announced again: 20,000 queued
// cost 20,000 claims, publishes, updates and traces, for copies NATS dropped). A claimed row stays
// due after the grace until its announcement is confirmed: nothing claimed is lost with the process.
import { Batcher, Counter, encodeJson, FailureLog, Gauge, newId, publishTraced, startAtZero, traceField, withSpan, type ServiceContext } from '@hodei/platform';
import { retryDue, type ExecutionQueuedEvent, type ExecutionStatusEvent } from '@hodei/types';
import type { ExecutionRow } from './store/executions.js';
import * as store from './store/retries.js';
import type { RetryRow } from './store/retries.js';

const MAX_BACKOFF_MS = 3600_000;
const JITTER = 0.2;
/** Also look at the table this often: retries created by another replica that stopped. */
const POLL_MS = 10_000;
/** An announcement that failed is tried again after this long. */
const REPUBLISH_MS = 1000;
const CLAIM_BATCH = 500;
/** A queued execution whose announcement is not known to be confirmed is announced (again) this
 *  long after it was recorded or claimed. A copy is harmless: JetStream drops it within its 2 min
 *  duplicate window, and the scheduler ignores an execution it has queued before. */
const ANNOUNCE_GRACE_MS = 30_000;

/** The back-off before attempt `attempt + 1`, jitter included (`random` in [0, 1)). */
export function backoffMs(backoffSeconds: number, attempt: number, random = Math.random()): number {
  const base = Math.min(backoffSeconds * 1000 * 2 ** Math.max(0, attempt - 1), MAX_BACKOFF_MS);
  return Math.round(Math.min(base * (1 - JITTER + 2 * JITTER * random), MAX_BACKOFF_MS));
}

export function shouldRetry(row: ExecutionRow): boolean {
  return retryDue(row.status, row.attempt, row.spec.max_retries);
}

export class Retries {
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Number.POSITIVE_INFINITY;
  private poll: NodeJS.Timeout | undefined;
  private stopped = true;
  private dispatching: Promise<void> | undefined;
  private again = false;
  private readonly counter: Counter<'reason'>;
  private readonly reading: FailureLog;
  private readonly dispatchingDue: FailureLog;
  private readonly confirming: FailureLog;
  /** Confirmed announcements of one moment share a statement. */
  private readonly confirmations: Batcher<string>;
  private lastConfirmation: Promise<void> = Promise.resolve();
  readonly graceMs: number;

  constructor(private readonly ctx: ServiceContext) {
    this.graceMs = ctx.config.announceGraceMs ?? ANNOUNCE_GRACE_MS;
    this.reading = new FailureLog(ctx.logger, 'reading waiting retries');
    this.dispatchingDue = new FailureLog(ctx.logger, 'dispatching due retries');
    this.confirming = new FailureLog(ctx.logger, 'recording confirmed announcements', 'those executions are announced again after their grace (a copy NATS drops)');
    this.confirmations = new Batcher((ids) => store.confirmed(ctx.db, ids));
    this.counter = new Counter({
      name: 'hodei_retries_total',
      help: 'New attempts created for executions that ended failed or lost, by reason',
      labelNames: ['reason'] as const,
      registers: [ctx.metrics],
    });
    startAtZero(this.counter, 'reason', ['failed', 'lost']);
    new Gauge({
      name: 'hodei_retries_waiting',
      help: 'Retries waiting out their back-off',
      registers: [ctx.metrics],
      async collect() {
        this.set(await store.countWaiting(ctx.db));
      },
    });
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.poll = setInterval(() => void this.arm(), POLL_MS);
    this.poll.unref();
    await this.arm();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poll);
    clearTimeout(this.timer);
    this.timerAt = Number.POSITIVE_INFINITY;
    await this.dispatching;
    await this.lastConfirmation;
  }

  /**
   * Called with an execution that just reached a final status (or whose final status came again):
   * creates its retry when the spec allows one. Returns the retry it created (null: none, or it
   * already existed) and the execution as it is now (its message names the retry).
   */
  async afterFinal(row: ExecutionRow): Promise<{ retry: RetryRow | null; row: ExecutionRow }> {
    if (!shouldRetry(row)) return { retry: null, row };
    const delay = backoffMs(row.spec.retry_backoff_seconds, row.attempt);
    const due = new Date(Date.now() + delay);
    const avoid = row.worker_id ? [row.worker_id] : [];
    const attempt = row.attempt + 1;
    const created = await store.insertRetry(this.ctx.db, {
      id: newId(),
      previous: row,
      due_at: due,
      avoid_workers: avoid,
      waiting: `retry of ${row.id} (${row.status}), attempt ${attempt} of ${row.spec.max_retries + 1}: back-off until ${due.toISOString()}`,
    });
    if (!created) return { retry: null, row };
    const { retry } = created;
    this.counter.inc({ reason: row.status });
    this.ctx.logger.info(
      { execution_id: row.id, retry_id: retry.id, attempt, reason: row.status, backoff_ms: delay },
      'execution will be retried',
    );
    // the orchestrator learns of the new attempt now (the job shows queued while it waits)
    const event: ExecutionStatusEvent = {
      execution_id: retry.id,
      job_id: retry.job_id,
      worker_id: null,
      status: 'queued',
      message: retry.waiting,
      retry_of: row.id,
      timestamp: new Date().toISOString(),
    };
    try {
      await publishTraced(this.ctx.bus.js, this.ctx.bus.subjects.forExecution(retry.job_id).status(retry.id), encodeJson(event), { msgID: `${retry.id}-retry` });
    } catch (err) {
      this.ctx.logger.warn({ err, execution_id: retry.id }, 'announcing a waiting retry failed; it is announced when due');
    }
    this.schedule(due.getTime());
    return { retry, row: created.previous };
  }

  /**
   * A new execution whose queued event NATS did not confirm (it may have it): announced again by the
   * loop that announces due retries, under the same message id until NATS confirms it, also after a
   * restart. Returns the execution as it is now; null when it is not queued any more.
   */
  async announceAgain(id: string, waiting: string): Promise<ExecutionRow | null> {
    const row = await store.announceAgain(this.ctx.db, id, waiting);
    if (row) this.schedule(Date.now());
    return row;
  }

  /** A new execution was recorded, due to be announced again at the end of its grace. */
  recorded(): void {
    this.schedule(Date.now() + this.graceMs);
  }

  /** NATS confirmed a new execution's announcement: it is due no more. Not awaited: should the
   *  update be lost, the execution is only announced again after its grace. */
  confirmed(id: string): void {
    // batches flush in order: the last one settles after every earlier one (stop() waits for it)
    this.lastConfirmation = this.confirmations.add(id).then(
      () => this.confirming.worked(),
      (err: unknown) => this.confirming.failed(err),
    );
  }

  /** Sets the timer for `at` unless it already fires sooner. */
  private schedule(at: number): void {
    if (this.stopped || at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    // setTimeout's limit is ~24.8 days; a back-off is at most an hour
    this.timer = setTimeout(() => {
      this.timerAt = Number.POSITIVE_INFINITY;
      this.kick();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  /** Reads when the next retry is due and sets the timer. */
  private async arm(): Promise<void> {
    try {
      const due = await store.nextDue(this.ctx.db);
      if (due) this.schedule(due.getTime());
      this.reading.worked();
    } catch (err) {
      this.reading.failed(err);
    }
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.dispatching) {
      this.again = true;
      return;
    }
    this.dispatching = (async () => {
      do {
        this.again = false;
        await this.dispatchDue().then(
          () => this.dispatchingDue.worked(),
          (err: unknown) => this.dispatchingDue.failed(err),
        );
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.dispatching = undefined;
      void this.arm();
    });
  }

  /** Announces every retry whose back-off is over (ExecutionQueuedEvent, like a new execution), and
   *  every new execution whose announcement NATS did not confirm. */
  private async dispatchDue(): Promise<void> {
    for (;;) {
      const due = await store.claimDue(this.ctx.db, CLAIM_BATCH, this.graceMs);
      // each attempt is a trace of its own, rooted here as a new execution is at POST /api/v1/execute
      for (const r of due) {
        const attributes = { 'hodei.execution_id': r.id, 'hodei.attempt': r.attempt, ...(r.retry_of ? { 'hodei.retry_of': r.retry_of } : {}) };
        await withSpan(r.retry_of ? 'worker-manager retry' : 'worker-manager announce again', () => this.announce(r), { parent: null, attributes });
      }
      if (due.length < CLAIM_BATCH) return;
    }
  }

  private async announce(r: RetryRow): Promise<void> {
    const event: ExecutionQueuedEvent = {
      execution_id: r.id,
      job_id: r.job_id,
      priority: r.priority,
      spec: r.spec,
      attempt: r.attempt,
      created_at: r.created_at.toISOString(),
      ...(r.avoid_workers.length ? { avoid_workers: r.avoid_workers } : {}),
      ...(r.retry_of ? { retry_of: r.retry_of } : {}),
      ...traceField(),
    };
    let duplicate: boolean;
    try {
      // the message id the first announcement had: NATS drops a copy of what it has (within the
      // events stream's duplicate window; the scheduler ignores an execution it knows after that)
      ({ duplicate } = await publishTraced(this.ctx.bus.js, this.ctx.bus.subjects.forExecution(r.job_id).queued, encodeJson(event), { msgID: r.id }));
    } catch (err) {
      this.ctx.logger.warn({ err, execution_id: r.id }, 'announcing a queued execution failed; trying again shortly');
      await store.unclaim(this.ctx.db, r.id, new Date(Date.now() + REPUBLISH_MS));
      return;
    }
    this.ctx.logger.debug({ execution_id: r.id, attempt: r.attempt, duplicate }, 'execution announced');
    await store.announced(this.ctx.db, r);
  }
}
