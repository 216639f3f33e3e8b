// What happens to executions: created (execute), cancelled, and moved along by the status events
// workers and the scheduler publish. Routes and the status consumer both go through here.
import { setTimeout as delay } from 'node:timers/promises';
import {
  Batcher,
  BadRequestError,
  checkDefinitionFits,
  ConflictError,
  decodeJson,
  dropResultParts,
  encodeJson,
  NotFoundError,
  ServiceClient,
  ServiceUnavailableError,
  newId,
  publishTraced,
  readResultParts,
  requireBus,
  requestNotTaken,
  stringPath,
  unstorableCharacter,
  traceField,
  type ServiceContext,
} from '@hodei/platform';
import {
  DEFAULT_SPEC,
  isFinalStatus,
  type ExecuteRequest,
  type Execution,
  type ExecutionQueuedEvent,
  type ExecutionStatusEvent,
  type Job,
  type JobSpec,
  type RegistryWorker,
  type WorkerControl,
} from '@hodei/types';
import { JetStreamApiError } from '@nats-io/jetstream';
import { finalOf, type FinalInfo, type LogHub } from './live/log-hub.js';
import type { LiveRelay } from './live/relay.js';
import type { WmMetrics } from './metrics.js';
import { shouldRetry, type Retries } from './retries.js';
import * as store from './store/executions.js';
import { retryOf } from './store/retries.js';
import type { ExecutionRow } from './store/executions.js';
import { countStoredUpTo, maxStoredSeq } from './store/logs.js';

/** How long a final status waits for the execution's next log lines to be stored (it waits on
 *  while they keep coming: a million lines may be stored well after the process ended). Longer
 *  than the log consumer's ack wait: lines a worker-manager that died had taken come back after it. */
const logWaitMs = (ackWaitMs: number) => ackWaitMs + 1000;
const LOG_RECHECK_MS = 50;
/** How long a cancel waits for an answer to the cancel sent to every worker; then a queued
 *  execution ends where it is, and a running one's worker is asked on its own subject. */
const CANCEL_ANYWHERE_MS = 25;
/** An execution that reads cancelled, ended within ENDED_LATELY_MS: how long a cancel still waits
 *  for the answer that tells whether it was this cancel's (a job that died at once on SIGTERM is
 *  recorded before its worker's answer comes when that worker is busy). */
const CANCEL_LATE_ANSWER_MS = 1000;
const ENDED_LATELY_MS = 10_000;

/** How long POST /execute waits for NATS to confirm the queued execution: within the 5 s its
 *  callers (the scheduler's firings) wait for the answer. Unconfirmed, it is sent again. */
const QUEUED_ACK_MS = 2000;

/** NATS answered the publish with a refusal (no stream for the subject, a full stream): nothing was
 *  stored. Any other failure (a time-out, a connection lost) leaves it unknown. */
const refusedByBus = (err: unknown): boolean => err instanceof JetStreamApiError || (err as Error | undefined)?.name === 'JetStreamNotEnabled';

const cancelControl = (executionId: string) =>
  encodeJson({ action: 'cancel', execution_id: executionId, reason: 'cancelled' } satisfies WorkerControl);

export class Executions {
  private readonly orchestrator: ServiceClient;
  private readonly scheduler: ServiceClient;
  // Status writes of many executions at one moment share a statement (a backlog of short jobs
  // otherwise costs the database a round trip per event).
  private readonly inserts: Batcher<store.NewExecution, ExecutionRow>;
  private readonly waits: Batcher<{ id: string; waiting: string | null }>;
  private readonly starts: Batcher<store.RunningUpdate, { row: ExecutionRow; wasRunning: boolean } | null>;
  private readonly finals: Batcher<{ id: string; update: store.FinalUpdate }, ExecutionRow | null>;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly logs: LogHub,
    private readonly live: LiveRelay,
    private readonly metrics: WmMetrics,
    private readonly retries: Retries,
  ) {
    this.orchestrator = new ServiceClient(ctx.config.urls.orchestrator, ctx.config.apiToken);
    this.scheduler = new ServiceClient(ctx.config.urls.scheduler, ctx.config.apiToken);
    this.inserts = new Batcher((items) => store.insertExecutions(ctx.db, items, retries.graceMs));
    this.waits = new Batcher((items) => store.setWaiting(ctx.db, items));
    this.starts = new Batcher((items) => store.markRunning(ctx.db, items));
    this.finals = new Batcher((items) => store.markFinals(ctx.db, items));
  }

  async get(id: string): Promise<ExecutionRow> {
    const row = await store.getExecution(this.ctx.db, id);
    if (!row) throw new NotFoundError('execution', id);
    return row;
  }

  async execute(body: ExecuteRequest): Promise<Execution> {
    requireBus(this.ctx.bus);
    let job: Job | null = null;
    if (body.job_id) {
      job = await this.orchestrator.find<Job>(`/api/v1/jobs/${body.job_id}`).catch((err: unknown) => {
        // the orchestrator is away or cannot answer yet (its database): nothing was done, try again
        throw requestNotTaken(err) ? new ServiceUnavailableError((err as Error).message) : err;
      });
      if (!job) throw new NotFoundError('job', body.job_id, 'job_id');
      const pipelineId = body.env?.HODEI_PIPELINE_ID;
      if (pipelineId !== undefined && job.pipeline_id !== pipelineId) {
        const message = `is set by the orchestrator for a pipeline run's job: job ${job.id} is not of pipeline ${pipelineId}`;
        throw new BadRequestError('invalid body: env.HODEI_PIPELINE_ID', [{ path: 'env.HODEI_PIPELINE_ID', message }]);
      }
    }
    const spec = resolveSpec(body, job);
    if (spec.command === null && spec.script === null) {
      throw new BadRequestError(`job ${job?.id ?? ''} has neither command nor script; give one in the request`, [
        { path: 'command', message: 'the job has no command or script: give command or script' },
      ]);
    }
    checkDefinitionFits(this.ctx.bus.nc.info?.max_payload, spec);
    const row = await this.inserts.add({
      id: newId(),
      job_id: job?.id ?? null,
      name: spec.name,
      priority: spec.priority,
      spec,
      attempt: 1,
    });
    this.retries.recorded();
    const event: ExecutionQueuedEvent = {
      execution_id: row.id,
      job_id: row.job_id,
      priority: row.priority,
      spec,
      attempt: row.attempt,
      created_at: row.created_at.toISOString(),
      ...traceField(),
    };
    try {
      const subject = this.ctx.bus.subjects.forExecution(row.job_id).queued;
      await publishTraced(this.ctx.bus.js, subject, encodeJson(event), { msgID: row.id, timeout: QUEUED_ACK_MS });
    } catch (err) {
      if (refusedByBus(err)) {
        await store.deleteExecution(this.ctx.db, row.id).catch(() => undefined);
        this.ctx.logger.warn({ err, execution_id: row.id }, 'NATS refused the queued execution');
        throw new ServiceUnavailableError(`the message bus did not accept the execution (${(err as Error).message}); nothing was done, try again`);
      }
      // NATS may have stored it (only its acknowledgement missing): a worker may run it already, so
      // it stays, and is sent again under the same message id, which NATS drops when it has it.
      const waiting = `the message bus has not confirmed that it took the execution (${(err as Error).message}); sending it again`;
      this.ctx.logger.warn({ err, execution_id: row.id }, 'NATS did not confirm the queued execution; sending it again');
      let kept: ExecutionRow | null;
      try {
        kept = await this.retries.announceAgain(row.id, waiting);
      } catch (dbErr) {
        // recorded all the same, due to be announced again at the end of its grace: a 503 would have
        // the caller queue it a second time
        this.ctx.logger.warn({ err: dbErr, execution_id: row.id }, 'marking the unconfirmed execution failed; it is announced again after its grace');
        return this.queued({ ...row, waiting });
      }
      // no longer queued: its worker's statuses came meanwhile (NATS had it)
      return kept ? this.queued(kept) : store.toExecution(await this.get(row.id));
    }
    this.retries.confirmed(row.id);
    return this.queued(row);
  }

  private queued(row: ExecutionRow): Execution {
    this.emitStatus(row, row.waiting ?? 'queued');
    return store.toExecution(row);
  }

  /** `askedBefore`: this request already sent a cancel to every worker (this is a second pass). */
  async cancel(id: string, askedBefore = false): Promise<Execution> {
    // The worker running it (if any) is asked while the row is read: it stops the processes at
    // once and reports the final status itself. A finished or unknown execution runs nowhere, so
    // nobody answers and the read decides (409 / 404). Cancelled by this request (its worker's
    // answer says so, however late) is a 202.
    const anywhere = this.cancelWherever(id);
    const row = await this.get(id);
    if (isFinalStatus(row.status) && row.status !== 'cancelled') throw new ConflictError(`execution ${id} already ended (${row.status})`);
    let answer = await Promise.race([anywhere, delay(CANCEL_ANYWHERE_MS, null)]);
    const endedLately = row.status === 'cancelled' && row.finished_at !== null && Date.now() - row.finished_at.getTime() < ENDED_LATELY_MS;
    if (!answer && endedLately && !askedBefore) answer = await anywhere;
    if (answer?.ok || (row.status === 'cancelled' && askedBefore)) return store.toExecution(row);
    if (isFinalStatus(row.status)) throw new ConflictError(`execution ${id} already ended (${row.status})`);
    if (answer) throw new ConflictError(`execution ${id}: its worker says ${answer.reason ?? 'it cannot be cancelled'}`);
    if (row.status === 'queued') {
      // A worker took it when it published a status this service has not applied yet (a short job
      // goes from queued straight to its final status, held back until its log lines are stored).
      // Cancelled: by a cancel whose worker answered too late for the ask above, this one's or
      // one sent together with it; it is what was asked.
      const sent = await this.statusOnItsWay(row);
      if (sent?.status === 'cancelled') return store.toExecution(row);
      if (sent && isFinalStatus(sent.status)) throw new ConflictError(`execution ${id} already ended (${sent.status}); its final status is being recorded`);
      if (sent?.status === 'running' && sent.worker_id) return this.cancelOnWorker(row, sent.worker_id);
      // Not running anywhere (a job reports running only after HODEI_WORKER_RUNNING_AFTER_MS):
      // it ends here without having started.
      const done = await store.markFinal(this.ctx.db, id, { status: 'cancelled', message: store.CANCELLED_BEFORE_START, from: ['queued'] });
      if (done) {
        await this.cancelled(done, null);
        return store.toExecution(done);
      }
      // it started (or ended) meanwhile: cancel it where it runs
      return this.cancel(id, true);
    }
    if (!row.worker_id) throw new ConflictError(`execution ${id} is ${row.status} on no known worker`);
    return this.cancelOnWorker(row, row.worker_id);
  }

  /** The last status a worker published for a `queued` row, when it is not applied yet. */
  private async statusOnItsWay(row: ExecutionRow): Promise<ExecutionStatusEvent | null> {
    const subject = this.ctx.bus.subjects.forExecution(row.job_id).status(row.id);
    let msg;
    try {
      requireBus(this.ctx.bus);
      msg = await this.ctx.bus.jsm.streams.getMessage(this.ctx.bus.subjects.eventsStream, { last_by_subj: subject });
    } catch (err) {
      throw new ServiceUnavailableError(`whether a worker took the execution could not be checked (${(err as Error).message}); try again`);
    }
    if (!msg) return null;
    const e = decodeJson(msg.data) as ExecutionStatusEvent;
    return e.status === 'queued' || e.status === 'pending' ? null : e;
  }

  /** Its worker did not answer the quick ask in time (busy): ask it directly, and wait longer. */
  private async cancelOnWorker(row: ExecutionRow, workerId: string): Promise<Execution> {
    const id = row.id;
    try {
      requireBus(this.ctx.bus);
      await this.ctx.bus.nc.request(this.ctx.bus.subjects.control(workerId), cancelControl(id), { timeout: 3000 });
      return store.toExecution(row);
    } catch (err) {
      const gone = await this.workerGone(workerId);
      if (!gone) {
        if (err instanceof ServiceUnavailableError) throw err;
        throw new ServiceUnavailableError(
          `worker ${workerId} did not answer the cancel request (${(err as Error).message}) and is still registered; try again ` +
            '(a worker silent for the heartbeat time-out goes offline, and its executions end)',
        );
      }
      // A worker that died took its jobs with it, and one cut off from NATS for the time-out kills them.
      const done = await store.markFinal(this.ctx.db, id, {
        status: 'cancelled',
        message: `cancelled; its worker ${workerId} ${gone}, so none of its processes runs any more`,
        from: ['queued', 'running'],
      });
      if (!done) return this.cancel(id, true); // it ended meanwhile
      await this.cancelled(done, workerId);
      return store.toExecution(done);
    }
  }

  /** How the scheduler's registry tells that the worker runs nothing any more; null when it may. */
  private async workerGone(workerId: string): Promise<string | null> {
    const w = await this.scheduler.find<RegistryWorker>(`/api/v1/workers/${workerId}`);
    if (!w) return 'is not registered';
    if (w.status === 'offline') return 'is offline';
    const silentMs = Date.now() - Date.parse(w.last_heartbeat_at ?? w.registered_at);
    if (w.status === 'stopped' && silentMs > this.ctx.config.heartbeatTimeoutMs) return `is stopped and silent for ${silentMs} ms`;
    return null;
  }

  /** Asks every worker to cancel the execution: the answer of the one holding it (ok: it is
   *  stopping it; not ok: it ended, its final status on the way), or null. */
  private async cancelWherever(id: string): Promise<{ ok: boolean; reason?: string } | null> {
    try {
      const reply = await this.ctx.bus.nc.request(
        this.ctx.bus.subjects.cancelAnywhere,
        cancelControl(id),
        { timeout: CANCEL_LATE_ANSWER_MS },
      );
      const r = decodeJson(reply.data) as { ok?: unknown; reason?: unknown };
      return { ok: r.ok === true, reason: typeof r.reason === 'string' ? r.reason : undefined };
    } catch {
      return null; // no worker holds it (only the one that does answers), or none is connected
    }
  }

  private stopOnWorker(executionId: string, workerId: string): void {
    this.ctx.bus.nc
      .request(this.ctx.bus.subjects.control(workerId), cancelControl(executionId), {
        timeout: 3000,
      })
      .catch((err: unknown) => this.ctx.logger.warn({ err, execution_id: executionId, worker_id: workerId }, 'could not stop a cancelled execution that started'));
  }

  /** One status event (from a worker or the scheduler); idempotent, never overwrites a final status. */
  async apply(e: ExecutionStatusEvent): Promise<void> {
    const db = this.ctx.db;
    if (e.status === 'queued' || e.status === 'pending') {
      await this.waits.add({ id: e.execution_id, waiting: e.message ?? null });
      return;
    }
    if (e.status === 'running') {
      const started = await this.starts.add({
        id: e.execution_id,
        worker_id: e.worker_id,
        started_at: e.started_at ?? null,
        progress: e.progress ?? null,
      });
      if (!started) {
        // Cancelled while the scheduler was handing it to a worker: the worker started it anyway,
        // so it is stopped where it runs (the recorded status stays cancelled).
        const now = await store.getExecution(db, e.execution_id);
        if (!now && e.worker_id) {
          // nothing here tracks it (its row deleted): stopped, rather than run unseen and unlogged
          this.ctx.logger.warn({ execution_id: e.execution_id, worker_id: e.worker_id }, 'a worker started an execution that is not recorded here; stopping it');
          this.stopOnWorker(e.execution_id, e.worker_id);
          return;
        }
        if (now?.status === 'cancelled' && e.worker_id) {
          this.stopOnWorker(e.execution_id, e.worker_id);
          await store.startedAfterCancel(db, e.execution_id, e.worker_id, e.started_at ?? null, 'stopped where it runs');
        }
        return;
      }
      const { row, wasRunning } = started;
      if (!wasRunning) this.emitStatus(row, e.message ?? null);
      if (e.progress) this.live.emit({ kind: 'progress', execution_id: row.id, progress: e.progress });
      return;
    }
    // the log batches travel on another stream: let them land first, so that a finished execution
    // shows all its lines (bounded: lines that never come do not hold the status back for long)
    if (e.last_seq) await this.logsStored(e.execution_id, e.last_seq, logWaitMs(this.ctx.config.ackWaitMs));
    const parts = e.result_parts ? await readResultParts(this.ctx.bus.jsm, this.ctx.bus.subjects, e.execution_id, e.result_parts) : undefined;
    const result = storable(parts ?? { result: e.result, result_error: e.result_error });
    const hasResult = result.result !== undefined;
    const row = await this.finals.add({
      id: e.execution_id,
      update: {
        status: e.status,
        worker_id: e.worker_id,
        exit_code: e.exit_code,
        signal: e.signal,
        message: e.message,
        started_at: e.started_at,
        finished_at: e.finished_at,
        duration_ms: e.duration_ms,
        last_seq: e.last_seq,
        has_result: hasResult,
        result: result.result,
        result_error: result.result_error,
      },
    });
    if (parts) await this.removeResultParts(e.execution_id);
    if (row) {
      await this.finished(await this.retryIfAllowed(row), e);
      return;
    }
    // already final: a redelivery after a failed publish must still reach the orchestrator (and
    // the retry, when the first delivery stopped before creating it)
    const current = await store.getExecution(db, e.execution_id);
    if (current && current.status === e.status) await this.publishFinished(await this.retryIfAllowed(current), e);
    if (current?.status === 'cancelled' && e.worker_id) await store.startedAfterCancel(db, e.execution_id, e.worker_id, e.started_at ?? null, `it ended ${e.status}`);
  }

  /** Once a result sent in parts is stored (or was already), its parts leave the stream. */
  private async removeResultParts(id: string): Promise<void> {
    await dropResultParts(this.ctx.bus.jsm, this.ctx.bus.subjects, id).catch((err: unknown) =>
      this.ctx.logger.warn({ err, execution_id: id }, "removing the result's parts from the stream failed; they expire with the stream's max age"),
    );
  }

  /** Creates the next attempt when the spec allows one; returns the execution as it is now. */
  private async retryIfAllowed(row: ExecutionRow): Promise<ExecutionRow> {
    const { retry, row: now } = await this.retries.afterFinal(row);
    if (retry) this.emitStatus(retry, retry.waiting);
    return now;
  }

  /** Waits until every line up to `lastSeq` is stored, for as long as lines keep being stored:
   *  gives up after `idleMs` without one (lines that never come: a worker that lost them). */
  private async logsStored(id: string, lastSeq: number, idleMs: number): Promise<void> {
    let stored = -1;
    let count = -1;
    let deadline = 0;
    for (;;) {
      const now = await maxStoredSeq(this.ctx.db, id);
      // the last line is there: are those before it? (a batch taken by a worker-manager that died comes later)
      const nowCount = now >= lastSeq ? await countStoredUpTo(this.ctx.db, id, lastSeq) : -1;
      if (nowCount >= lastSeq && !this.logs.hasPending(id)) return;
      if (now > stored || nowCount > count) {
        stored = now;
        count = nowCount;
        deadline = Date.now() + idleMs;
      } else if (Date.now() >= deadline) break;
      // woken by this process's next insert of the execution's lines; the timeout covers lines
      // stored by another replica
      await this.logs.nextStored(id, Math.min(LOG_RECHECK_MS, Math.max(1, deadline - Date.now())));
    }
    this.ctx.logger.warn({ execution_id: id, last_seq: lastSeq, stored_seq: stored, stored_lines: count }, `final status recorded without all its log lines (none stored for ${idleMs} ms)`);
  }

  /**
   * A cancel recorded here (the execution runs nowhere): the scheduler drops a queued one, and the
   * orchestrator learns its job's execution ended. The cancel stands once recorded: when NATS does
   * not take these messages, they are sent again until it does, and the request still succeeds.
   */
  private async cancelled(done: ExecutionRow, workerId: string | null): Promise<void> {
    const event: ExecutionStatusEvent = { execution_id: done.id, job_id: done.job_id, worker_id: workerId, status: 'cancelled', timestamp: new Date().toISOString() };
    const announce = async () => {
      if (workerId === null) await this.ctx.bus.js.publish(this.ctx.bus.subjects.executionCancel, encodeJson({ execution_id: done.id }));
      await this.publishFinished(done, event);
    };
    try {
      await announce();
    } catch (err) {
      this.ctx.logger.warn({ err, execution_id: done.id }, 'cancel recorded, but NATS did not take its announcement; sending it again until it does');
      void this.untilSent(announce, done.id);
    }
    this.recordFinished(done);
  }

  private async untilSent(send: () => Promise<void>, executionId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** Math.min(attempt, 6))).unref());
      try {
        await send();
        this.ctx.logger.info({ execution_id: executionId, attempt }, 'cancel announced');
        return;
      } catch (err) {
        if (this.ctx.bus.nc.isClosed()) return; // shutting down
        if (attempt % 10 === 0) this.ctx.logger.warn({ err, execution_id: executionId, attempt }, 'cancel still not announced');
      }
    }
  }

  /** Told here first: should NATS not take the announcement, the status event comes again and finds
   *  the row final, which announces it again but must not count it or tell the streams twice. */
  private async finished(row: ExecutionRow, e: ExecutionStatusEvent): Promise<void> {
    this.recordFinished(row);
    await this.publishFinished(row, e);
  }

  private recordFinished(row: ExecutionRow): void {
    this.metrics.finished.inc({ status: row.status });
    if (row.duration_ms !== null) this.metrics.duration.observe({ status: row.status }, row.duration_ms / 1000);
    this.emitStatus(row, row.message, finalOf(row));
  }

  /** For the orchestrator: the end of a job's execution, as recorded here. */
  private async publishFinished(row: ExecutionRow, e: ExecutionStatusEvent): Promise<void> {
    if (row.job_id === null) return;
    const retry = shouldRetry(row) ? await retryOf(this.ctx.db, row.id) : null;
    const event: ExecutionStatusEvent = {
      execution_id: row.id,
      job_id: row.job_id,
      worker_id: row.worker_id,
      status: row.status,
      exit_code: row.exit_code,
      signal: row.signal,
      message: row.message,
      progress: row.progress,
      last_seq: row.last_seq ?? 0,
      started_at: row.started_at?.toISOString() ?? null,
      finished_at: row.finished_at?.toISOString() ?? null,
      duration_ms: row.duration_ms,
      ...(retry ? { retried_as: retry.id } : {}),
      timestamp: e.timestamp,
    };
    await publishTraced(this.ctx.bus.js, this.ctx.bus.subjects.executionFinished, encodeJson(event), { msgID: `${row.id}-finished` });
  }

  /** `final`: the execution ended, and this is what its log streams' `completed` says. */
  private emitStatus(row: ExecutionRow, message: string | null, final?: FinalInfo): void {
    this.live.emit(
      {
        kind: 'status',
        final: isFinalStatus(row.status),
        data: {
          type: 'status_changed',
          execution_id: row.id,
          job_id: row.job_id,
          status: row.status,
          message,
          timestamp: store.statusTimestamp(row),
        },
      },
      final,
    );
  }
}

/** A result the database cannot hold (a NUL character or a lone surrogate in a string or key) is
 *  reported, not altered: storing it would fail on every redelivery of the final status. */
function storable(r: { result?: unknown; result_error?: string }): { result?: unknown; result_error?: string } {
  let what: string | undefined;
  const at = r.result === undefined ? undefined : stringPath(r.result, (s) => (what = unstorableCharacter(s)) !== undefined);
  if (at === undefined) return r;
  return { result_error: `the result cannot be stored: it holds ${what} at ${at || 'its top level'}` };
}

/** The snapshot an execution runs with: the request's fields over the job's, over the defaults. */
export function resolveSpec(body: ExecuteRequest, job: Job | null): JobSpec {
  const inlineCode = body.command !== undefined || body.script !== undefined;
  const command = inlineCode ? (body.command ?? null) : (job?.command ?? null);
  const script = inlineCode ? (body.script ?? null) : (job?.script ?? null);
  const firstLine = (command ?? script ?? '').split('\n').find((l) => l.trim() && !l.startsWith('#!')) ?? 'execution';
  return {
    name: body.name ?? job?.name ?? firstLine.trim().slice(0, 100),
    command,
    script,
    args: body.args ?? job?.args ?? DEFAULT_SPEC.args,
    env: { ...(job?.env ?? {}), ...(body.env ?? {}) },
    working_dir: body.working_dir ?? job?.working_dir ?? null,
    timeout_seconds: body.timeout_seconds ?? job?.timeout_seconds ?? null,
    priority: body.priority ?? job?.priority ?? DEFAULT_SPEC.priority,
    resources: {
      cpu_cores: body.resources?.cpu_cores ?? job?.resources.cpu_cores ?? DEFAULT_SPEC.resources.cpu_cores,
      memory_bytes: body.resources?.memory_bytes ?? job?.resources.memory_bytes ?? DEFAULT_SPEC.resources.memory_bytes,
    },
    labels: body.labels ?? job?.labels ?? DEFAULT_SPEC.labels,
    max_retries: body.max_retries ?? job?.max_retries ?? DEFAULT_SPEC.max_retries,
    retry_backoff_seconds: body.retry_backoff_seconds ?? job?.retry_backoff_seconds ?? DEFAULT_SPEC.retry_backoff_seconds,
  };
}
