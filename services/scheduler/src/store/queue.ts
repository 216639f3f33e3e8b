// SQL for the queue of executions waiting for (or placed on) a worker.
import type { Pool } from '@hodei/platform';
import type { ExecutionQueuedEvent, JobSpec } from '@hodei/types';

export interface QueueEntry {
  execution_id: string;
  job_id: string | null;
  priority: number;
  attempt: number;
  spec: JobSpec;
  traceparent: string | null;
  cpu_cores: number;
  memory_bytes: number;
  waiting_reason: string | null;
  /** Workers earlier attempts ran on (a retry): chosen only when no other worker fits. */
  avoid_workers: string[];
  /** When the execution was queued (ms since epoch): the tie-breaker after priority. */
  created_ms: number;
}

interface QueueRow extends Omit<QueueEntry, 'created_ms'> {
  created_at: Date;
}

const toEntry = ({ created_at, ...r }: QueueRow): QueueEntry => ({ ...r, created_ms: created_at.getTime() });

/** The entry a queued event becomes, before (or without) reading it back. */
export function entryOf(ev: ExecutionQueuedEvent): QueueEntry {
  return {
    execution_id: ev.execution_id,
    job_id: ev.job_id,
    priority: ev.priority,
    attempt: ev.attempt,
    spec: ev.spec,
    traceparent: ev.traceparent ?? null,
    cpu_cores: ev.spec.resources.cpu_cores,
    memory_bytes: Math.round(ev.spec.resources.memory_bytes),
    waiting_reason: null,
    avoid_workers: ev.avoid_workers ?? [],
    created_ms: Date.parse(ev.created_at),
  };
}

/** priority DESC, then oldest first, then id: the order the queue is served in. */
export const queueOrder = (a: QueueEntry, b: QueueEntry): number =>
  b.priority - a.priority || a.created_ms - b.created_ms || (a.execution_id < b.execution_id ? -1 : a.execution_id > b.execution_id ? 1 : 0);

export class QueueStore {
  constructor(private readonly db: Pool) {}

  /** Stores a queued execution; false when it is already known (redelivery, or already finished/cancelled). */
  async enqueue(ev: ExecutionQueuedEvent): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `INSERT INTO queue (execution_id, job_id, priority, attempt, spec, traceparent, created_at, cpu_cores, memory_bytes, avoid_workers)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::uuid[]) ON CONFLICT (execution_id) DO NOTHING`,
      [
        ev.execution_id,
        ev.job_id,
        ev.priority,
        ev.attempt,
        JSON.stringify(ev.spec),
        ev.traceparent ?? null,
        ev.created_at,
        ev.spec.resources.cpu_cores,
        Math.round(ev.spec.resources.memory_bytes),
        ev.avoid_workers ?? [],
      ],
    );
    return (rowCount ?? 0) > 0;
  }

  /** The execution finished: whatever it held is released. Leaves a tombstone when it was never seen. */
  async finish(executionId: string): Promise<void> {
    await this.db.query(
      `INSERT INTO queue (execution_id, priority, attempt, spec, created_at, cpu_cores, memory_bytes, state, done_at)
       VALUES ($1, 0, 0, '{}', now(), 0, 0, 'done', now())
       ON CONFLICT (execution_id) DO UPDATE SET state = 'done', done_at = now()`,
      [executionId],
    );
  }

  /** Cancelled while queued: dropped if still waiting (a placed one ends with its finished event). */
  async cancel(executionId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `INSERT INTO queue (execution_id, priority, attempt, spec, created_at, cpu_cores, memory_bytes, state, done_at)
       VALUES ($1, 0, 0, '{}', now(), 0, 0, 'done', now())
       ON CONFLICT (execution_id) DO UPDATE SET state = 'done', done_at = now() WHERE queue.state = 'waiting'`,
      [executionId],
    );
    return (rowCount ?? 0) > 0;
  }

  async waiting(limit: number): Promise<QueueEntry[]> {
    const { rows } = await this.db.query<QueueRow>(
      `SELECT execution_id, job_id, priority, attempt, spec, traceparent, cpu_cores, memory_bytes::float8 AS memory_bytes, waiting_reason,
              avoid_workers::text[] AS avoid_workers, created_at
       FROM queue WHERE state = 'waiting' ORDER BY priority DESC, created_at, execution_id LIMIT $1`,
      [limit],
    );
    return rows.map(toEntry);
  }

  /** Claims entries for workers; only rows still waiting are claimed (another replica may have been first). */
  async claim(pairs: { execution_id: string; worker_id: string }[]): Promise<Set<string>> {
    if (!pairs.length) return new Set();
    const { rows } = await this.db.query<{ execution_id: string }>(
      `UPDATE queue q SET state = 'assigning', worker_id = v.worker_id, claimed_at = clock_timestamp()
       FROM unnest($1::uuid[], $2::uuid[]) AS v(execution_id, worker_id)
       WHERE q.execution_id = v.execution_id AND q.state = 'waiting'
       RETURNING q.execution_id`,
      [pairs.map((p) => p.execution_id), pairs.map((p) => p.worker_id)],
    );
    return new Set(rows.map((r) => r.execution_id));
  }

  async confirm(executionId: string, workerId: string): Promise<void> {
    await this.db.query(
      `UPDATE queue SET state = 'assigned', waiting_reason = NULL WHERE execution_id = $1 AND worker_id = $2 AND state = 'assigning'`,
      [executionId, workerId],
    );
  }

  /** The worker did not take it: back to waiting. */
  async release(executionId: string, workerId: string): Promise<void> {
    await this.db.query(
      `UPDATE queue SET state = 'waiting', worker_id = NULL, claimed_at = NULL WHERE execution_id = $1 AND worker_id = $2 AND state = 'assigning'`,
      [executionId, workerId],
    );
  }

  /** Claims whose request outlived any answer (the claiming process died): back to waiting. */
  async expireClaims(olderThanMs: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `UPDATE queue SET state = 'waiting', worker_id = NULL, claimed_at = NULL
       WHERE state = 'assigning' AND claimed_at < now() - make_interval(secs => $1::float8 / 1000)`,
      [olderThanMs],
    );
    return rowCount ?? 0;
  }

  /** Records why an entry waits; true only when the reason changed (so it is announced once). */
  async setReason(executionId: string, reason: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE queue SET waiting_reason = $2 WHERE execution_id = $1 AND state = 'waiting' AND waiting_reason IS DISTINCT FROM $2`,
      [executionId, reason],
    );
    return (rowCount ?? 0) > 0;
  }

  /** The worker is gone: whatever was placed on it is over (lost); returns those executions. */
  async loseWorker(workerId: string): Promise<{ execution_id: string; job_id: string | null }[]> {
    const { rows } = await this.db.query<{ execution_id: string; job_id: string | null }>(
      `UPDATE queue SET state = 'done', done_at = now()
       WHERE worker_id = $1 AND state IN ('assigning', 'assigned') RETURNING execution_id, job_id`,
      [workerId],
    );
    return rows;
  }

  /** Tombstones live as long as the events stream keeps the messages they guard against. */
  async prune(olderThanDays: number): Promise<void> {
    await this.db.query(`DELETE FROM queue WHERE state = 'done' AND done_at < now() - make_interval(days => $1)`, [olderThanDays]);
  }

  async depth(): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(`SELECT count(*) AS n FROM queue WHERE state = 'waiting'`);
    return rows[0]?.n ?? 0;
  }
}
