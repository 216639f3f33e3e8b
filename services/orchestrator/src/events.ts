// Job status follows its executions: durable JetStream consumers on worker-manager's (and the
// scheduler's) execution events record each execution and set the job's status from its newest.
// An execution of a job deleted meanwhile is cancelled (worker-manager read the job before the
// DELETE, which could not know of the execution yet).
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { decodeJson, ensureConsumer, FailureLog, InProgress, withConsumedSpan, withTransaction, type Bus, type Logger, type Pool } from '@hodei/platform';
import { ExecutionQueuedEvent, ExecutionStatusEvent, isFinalStatus } from '@hodei/types';
import type { Counter } from 'prom-client';
import { newestStatus, recordExecution, type ExecutionUpdate } from './store/executions.js';
import { lockJob, setJobStatus } from './store/jobs.js';

/** Events of one consumer handled at once (each takes a database connection while it runs). */
const HANDLE_CONCURRENCY = 4;

/** Applies one execution event; false when the job is unknown (the event is ignored). */
export async function applyExecutionEvent(db: Pool, u: ExecutionUpdate): Promise<boolean> {
  return withTransaction(db, async (c) => {
    if (!(await lockJob(c, u.job_id))) return false;
    await recordExecution(c, u);
    // the retry's own queued event travels on another subject and may come later: the job is
    // queued for it now, not failed in between
    if (u.retried_as) await recordExecution(c, { execution_id: u.retried_as, job_id: u.job_id, status: 'queued', retry_of: u.execution_id });
    await setJobStatus(c, u.job_id, await newestStatus(c, u.job_id));
    return true;
  });
}

function toUpdate(kind: 'queued' | 'status', data: unknown): ExecutionUpdate | null | 'invalid' {
  if (kind === 'queued') {
    const e = ExecutionQueuedEvent.safeParse(data);
    if (!e.success) return 'invalid';
    return e.data.job_id ? { execution_id: e.data.execution_id, job_id: e.data.job_id, status: 'queued', retry_of: e.data.retry_of } : null;
  }
  const e = ExecutionStatusEvent.safeParse(data);
  if (!e.success) return 'invalid';
  const v = e.data;
  if (!v.job_id) return null;
  return {
    execution_id: v.execution_id,
    job_id: v.job_id,
    status: v.status,
    exit_code: v.exit_code,
    started_at: v.started_at,
    finished_at: v.finished_at,
    duration_ms: v.duration_ms,
    retry_of: v.retry_of,
    retried_as: v.retried_as,
  };
}

/**
 * A failed or lost end as the worker or the scheduler reports it on the status subject: only
 * worker-manager knows whether a retry follows, and its finished event says so (`retried_as`), so
 * the job goes from running to queued for the retry instead of showing failed in between.
 */
const awaitsRetryVerdict = (u: ExecutionUpdate): boolean => u.status === 'failed' || u.status === 'lost';

export interface ExecutionConsumers {
  start: () => Promise<void>;
  stop: () => Promise<void>;
}

export function executionConsumers(
  bus: Bus,
  db: Pool,
  logger: Logger,
  eventsCounter: Counter,
  /** Called after an event of a known job was recorded (pipeline runs advance here). */
  onRecorded: (u: ExecutionUpdate) => Promise<void>,
  /** Asks worker-manager to cancel an execution; false when it already ended or is gone. */
  cancel: (executionId: string) => Promise<boolean>,
): ExecutionConsumers {
  const s = bus.subjects;
  const specs = [
    { durable: 'orchestrator-queued', subject: s.executionQueued, kind: 'queued' as const, fromWorkerManager: true },
    { durable: 'orchestrator-status', subject: s.executionStatusAll, kind: 'status' as const, fromWorkerManager: false },
    { durable: 'orchestrator-finished', subject: s.executionFinished, kind: 'status' as const, fromWorkerManager: true },
  ];
  const running: Array<{ messages: ConsumerMessages; loop: Promise<void> }> = [];
  let stopping = false;
  let handling: InProgress | undefined;
  const failures = new FailureLog(logger, 'handling execution events', 'they will be redelivered');

  const handle = async (m: JsMsg, data: unknown, spec: (typeof specs)[number], log: Logger) => {
    const { kind } = spec;
    const update = toUpdate(kind, data);
    if (update === 'invalid') {
      log.warn({ subject: m.subject, seq: m.seq }, 'ignoring an execution event that does not match its schema');
      eventsCounter.inc({ kind, outcome: 'invalid' });
      m.term();
      return;
    }
    if (update === null || (!spec.fromWorkerManager && awaitsRetryVerdict(update))) {
      eventsCounter.inc({ kind, outcome: 'ignored' });
      m.ack();
      return;
    }
    try {
      const known = await applyExecutionEvent(db, update);
      if (known) await onRecorded(update);
      else if (!isFinalStatus(update.status) && (await cancel(update.execution_id)))
        log.warn({ execution_id: update.execution_id, job_id: update.job_id }, 'cancelled an execution of a job that was deleted');
      eventsCounter.inc({ kind, outcome: known ? 'applied' : 'unknown_job' });
      m.ack();
      failures.worked();
    } catch (err) {
      // Postgres hiccup: let JetStream deliver it again shortly.
      failures.failed(err, { consumer: spec.durable, execution_id: update.execution_id });
      m.nak(1000);
    }
  };

  return {
    start: async () => {
      const inProgress = (handling = new InProgress());
      for (const spec of specs) {
        const log = logger.child({ consumer: spec.durable });
        const consumer = await ensureConsumer(bus, s.eventsStream, { durable: spec.durable, filter: spec.subject });
        const messages = await consumer.consume({ max_messages: 64 });
        const loop = (async () => {
          // Events of different jobs are handled side by side (a fan-out's hundreds of events would
          // otherwise wait for each other's transactions); those of one job in order: each locks the
          // job's row, so side by side they held every connection of the pool waiting for that lock
          // (a cancel of 1,500 queued executions of one job slowed GET /api/v1/jobs to 300 ms).
          const chains = new Map<string, Promise<void>>();
          const inFlight = new Set<Promise<void>>();
          try {
            for await (const m of messages) {
              if (stopping) break; // left unacked: redelivered to whoever runs next
              let data: unknown;
              try {
                data = decodeJson(m.data);
              } catch {
                data = undefined;
              }
              const { execution_id: id, job_id: jobId } = (data ?? {}) as { execution_id?: unknown; job_id?: unknown };
              if (jobId === null && typeof id === 'string') {
                // an execution of no job (most of them, with `hodei run`): nothing here follows from it
                eventsCounter.inc({ kind: spec.kind, outcome: 'ignored' });
                m.ack();
                continue;
              }
              const key = typeof jobId === 'string' ? jobId : typeof id === 'string' ? id : '';
              while (inFlight.size >= HANDLE_CONCURRENCY) await Promise.race(inFlight);
              inProgress.add(m);
              const p = (chains.get(key) ?? Promise.resolve())
                .then(() => withConsumedSpan(`orchestrator ${spec.durable}`, m, () => handle(m, data, spec, log)))
                .catch((err: unknown) => log.error({ err, seq: m.seq }, 'handling an execution event failed'))
                .finally(() => inProgress.delete(m));
              chains.set(key, p);
              inFlight.add(p);
              void p.finally(() => {
                inFlight.delete(p);
                if (chains.get(key) === p) chains.delete(key);
              });
            }
          } finally {
            await Promise.all(inFlight);
          }
        })().catch((err: unknown) => log.error({ err }, 'consumer stopped with an error'));
        running.push({ messages, loop });
      }
    },
    stop: async () => {
      stopping = true;
      await Promise.all(
        running.splice(0).map(async ({ messages, loop }) => {
          await messages.close().catch(() => undefined);
          await loop;
        }),
      );
      handling?.stop();
    },
  };
}
