// SQL for the queue of executions waiting for (or placed on) a worker.
import { fromRecords, records, type Pool } from '@hodei/platform';
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

export interface PlacedEntry {
  execution_id: string;
  job_id: string | null;
  worker_id: string;
}

export interface Stored {
  stored: boolean;
  known: { state: string; worker_id: string | null } | null;
}

/** What placement looks at in an entry: the labels it wants and its size. */
export interface EntryKind {
  labels: Record<string, string>;
  cpu_cores: number;
  memory_bytes: number;
}

/** The queue entry `$1` (`last`), and the entries after it in queue order (`q`). */
const LAST = 'last AS (SELECT priority, created_at, execution_id FROM queue WHERE execution_id = $1)';
const AFTER_LAST =
  '(q.priority < last.priority OR (q.priority = last.priority AND (q.created_at, q.execution_id) > (last.created_at, last.execution_id)))';

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

  /** Stores queued executions, each waiting or, with `claimFor`, claimed for that worker at once.
   *  Per item: stored, or not because the entry is known already (redelivery, finished, cancelled,
   *  or the same event twice in the list), with the known entry's state as it was. */
  async enqueue(items: { event: ExecutionQueuedEvent; claimFor?: string | undefined }[]): Promise<Stored[]> {
    const { rows } = await this.db.query<{ execution_id: string; inserted: boolean; state: string | null; worker_id: string | null }>(
      `WITH v AS (SELECT v.* FROM ${fromRecords(
        '$1',
        `v_id uuid, v_job uuid, v_priority integer, v_attempt integer, v_spec jsonb, v_traceparent text, v_created timestamptz,
         v_cpu float8, v_memory bigint, v_avoid jsonb, v_worker uuid`,
      )}),
            ins AS (INSERT INTO queue (execution_id, job_id, priority, attempt, spec, traceparent, created_at, cpu_cores, memory_bytes,
                                       avoid_workers, state, worker_id, claimed_at)
                    SELECT v_id, v_job, v_priority, v_attempt, v_spec, v_traceparent, v_created, v_cpu, v_memory,
                           ARRAY(SELECT jsonb_array_elements_text(v_avoid))::uuid[],
                           CASE WHEN v_worker IS NULL THEN 'waiting' ELSE 'assigning' END, v_worker,
                           CASE WHEN v_worker IS NULL THEN NULL ELSE clock_timestamp() END
                    FROM v
                    ON CONFLICT (execution_id) DO NOTHING RETURNING execution_id)
       SELECT v_id AS execution_id, ins.execution_id IS NOT NULL AS inserted, q.state, q.worker_id
       FROM v LEFT JOIN ins ON ins.execution_id = v_id LEFT JOIN queue q ON q.execution_id = v_id`,
      [
        records(
          items.map(({ event: ev, claimFor }) => ({
            v_id: ev.execution_id,
            v_job: ev.job_id,
            v_priority: ev.priority,
            v_attempt: ev.attempt,
            v_spec: ev.spec,
            v_traceparent: ev.traceparent ?? null,
            v_created: ev.created_at,
            v_cpu: ev.spec.resources.cpu_cores,
            v_memory: Math.round(ev.spec.resources.memory_bytes),
            v_avoid: ev.avoid_workers ?? [],
            v_worker: claimFor ?? null,
          })),
        ),
      ],
    );
    const inserted = new Set(rows.filter((r) => r.inserted).map((r) => r.execution_id));
    const known = new Map(rows.filter((r) => r.state !== null).map((r) => [r.execution_id, { state: r.state!, worker_id: r.worker_id }]));
    return items.map((i) =>
      inserted.delete(i.event.execution_id) ? { stored: true, known: null } : { stored: false, known: known.get(i.event.execution_id) ?? null },
    );
  }

  /** The executions finished: whatever they held is released. Leaves a tombstone for one never seen. */
  async finish(executionIds: string[]): Promise<void> {
    await this.db.query(
      `INSERT INTO queue (execution_id, priority, attempt, spec, created_at, cpu_cores, memory_bytes, state, done_at)
       SELECT id, 0, 0, '{}', now(), 0, 0, 'done', now() FROM unnest($1::uuid[]) AS id
       ON CONFLICT (execution_id) DO UPDATE SET state = 'done', done_at = now()`,
      [[...new Set(executionIds)]],
    );
  }

  /**
   * Cancelled while queued as far as worker-manager knew: dropped if still waiting (a tombstone if
   * never seen). Answers the worker it was already placed on, if any: the cancel must reach it there.
   */
  async cancel(executionId: string): Promise<{ dropped: boolean; placedOn: string | null }> {
    const { rows } = await this.db.query<{ state: string; worker_id: string | null; dropped: boolean }>(
      `WITH before AS (SELECT state, worker_id FROM queue WHERE execution_id = $1 FOR UPDATE),
            up AS (INSERT INTO queue (execution_id, priority, attempt, spec, created_at, cpu_cores, memory_bytes, state, done_at)
                   VALUES ($1, 0, 0, '{}', now(), 0, 0, 'done', now())
                   ON CONFLICT (execution_id) DO UPDATE SET state = 'done', done_at = now() WHERE queue.state = 'waiting'
                   RETURNING 1)
       SELECT (SELECT state FROM before) AS state, (SELECT worker_id FROM before) AS worker_id, EXISTS (SELECT 1 FROM up) AS dropped`,
      [executionId],
    );
    const r = rows[0]!;
    const placed = r.state === 'assigning' || r.state === 'assigned';
    return { dropped: r.dropped, placedOn: placed ? r.worker_id : null };
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

  /**
   * Waiting entries after `afterId` in queue order that one of these free capacities fits (labels,
   * cpu, memory): those a round reaches only past a long run of entries nothing fits now.
   */
  async waitingFitting(afterId: string, free: EntryKind[], limit: number): Promise<QueueEntry[]> {
    const { rows } = await this.db.query<QueueRow>(
      `WITH ${LAST}
       SELECT q.execution_id, q.job_id, q.priority, q.attempt, q.spec, q.traceparent, q.cpu_cores, q.memory_bytes::float8 AS memory_bytes,
              q.waiting_reason, q.avoid_workers::text[] AS avoid_workers, q.created_at
       FROM queue q, last
       WHERE q.state = 'waiting' AND ${AFTER_LAST}
         AND EXISTS (SELECT 1 FROM jsonb_to_recordset($2::jsonb) AS f(labels jsonb, cpu_cores float8, memory_bytes float8)
                     WHERE f.labels @> coalesce(q.spec->'labels', '{}') AND f.cpu_cores + 1e-9 >= q.cpu_cores AND f.memory_bytes >= q.memory_bytes)
       ORDER BY q.priority DESC, q.created_at, q.execution_id LIMIT $3`,
      [afterId, JSON.stringify(free), limit],
    );
    return rows.map(toEntry);
  }

  /** The kinds (labels and size) of the entries waiting after `afterId` in queue order. */
  async waitingKindsAfter(afterId: string): Promise<EntryKind[]> {
    const { rows } = await this.db.query<EntryKind>(
      `WITH ${LAST}
       SELECT DISTINCT coalesce(q.spec->'labels', '{}') AS labels, q.cpu_cores, q.memory_bytes::float8 AS memory_bytes
       FROM queue q, last WHERE q.state = 'waiting' AND ${AFTER_LAST} LIMIT 1000`,
      [afterId],
    );
    return rows;
  }

  /**
   * Records one reason for all entries of a kind waiting after `afterId` (but those of `skip`), for
   * those queued at least `min_age_ms` ago; returns the entries whose reason changed.
   */
  async setReasonsAfter(
    afterId: string,
    skip: string[],
    kinds: (EntryKind & { reason: string; min_age_ms: number })[],
  ): Promise<{ execution_id: string; job_id: string | null; traceparent: string | null; reason: string }[]> {
    const { rows } = await this.db.query<{ execution_id: string; job_id: string | null; traceparent: string | null; reason: string }>(
      `WITH ${LAST},
            v AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS v(labels jsonb, cpu_cores float8, memory_bytes float8, reason text, min_age_ms float8))
       UPDATE queue q SET waiting_reason = v.reason FROM v, last
       WHERE q.state = 'waiting' AND ${AFTER_LAST} AND q.execution_id <> ALL($3::uuid[])
         AND coalesce(q.spec->'labels', '{}') = v.labels AND q.cpu_cores = v.cpu_cores AND q.memory_bytes = v.memory_bytes
         AND q.waiting_reason IS DISTINCT FROM v.reason AND q.created_at <= now() - make_interval(secs => v.min_age_ms / 1000)
       RETURNING q.execution_id, q.job_id, q.traceparent, v.reason`,
      [afterId, JSON.stringify(kinds), skip],
    );
    return rows;
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

  /** The workers took these executions. */
  async confirm(pairs: { execution_id: string; worker_id: string }[]): Promise<void> {
    await this.db.query(
      `UPDATE queue q SET state = 'assigned', waiting_reason = NULL
       FROM unnest($1::uuid[], $2::uuid[]) AS v(execution_id, worker_id)
       WHERE q.execution_id = v.execution_id AND q.worker_id = v.worker_id AND q.state = 'assigning'`,
      [pairs.map((p) => p.execution_id), pairs.map((p) => p.worker_id)],
    );
  }

  /** The worker did not take it: back to waiting. */
  async release(executionId: string, workerId: string): Promise<void> {
    await this.db.query(
      `UPDATE queue SET state = 'waiting', worker_id = NULL, claimed_at = NULL WHERE execution_id = $1 AND worker_id = $2 AND state = 'assigning'`,
      [executionId, workerId],
    );
  }

  /** The worker did not answer in time and is asked again: the claim stays (and is not taken for
   *  one whose claimer died). False when it is no longer this worker's claim. */
  async keepClaim(executionId: string, workerId: string): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE queue SET claimed_at = clock_timestamp() WHERE execution_id = $1 AND worker_id = $2 AND state = 'assigning'`,
      [executionId, workerId],
    );
    return (rowCount ?? 0) > 0;
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

  /** Records why entries wait; returns those whose reason changed (so each is announced once). */
  async setReasons(reasons: { execution_id: string; reason: string }[]): Promise<Set<string>> {
    const { rows } = await this.db.query<{ execution_id: string }>(
      `UPDATE queue q SET waiting_reason = v.reason
       FROM unnest($1::uuid[], $2::text[]) AS v(execution_id, reason)
       WHERE q.execution_id = v.execution_id AND q.state = 'waiting' AND q.waiting_reason IS DISTINCT FROM v.reason
       RETURNING q.execution_id`,
      [reasons.map((r) => r.execution_id), reasons.map((r) => r.reason)],
    );
    return new Set(rows.map((r) => r.execution_id));
  }

  /**
   * What a worker says it runs. Those still claimed for it, or waiting (a claim released while it
   * took the assignment), are placed on it: the process (a replica) that claimed them may have
   * died between the worker's acceptance and its record, and such an entry placed again would run
   * a second time. Returns those it must not run: over (lost, cancelled, ended, on whatever
   * worker) or placed on another worker.
   */
  async runningOn(workerId: string, executionIds: string[]): Promise<string[]> {
    const { rows } = await this.db.query<{ execution_id: string }>(
      `WITH placed AS (
         UPDATE queue SET state = 'assigned', worker_id = $1, claimed_at = coalesce(claimed_at, clock_timestamp()), waiting_reason = NULL
          WHERE execution_id = ANY($2::uuid[]) AND (state = 'waiting' OR (worker_id = $1 AND state = 'assigning')))
       SELECT execution_id FROM queue
        WHERE execution_id = ANY($2::uuid[]) AND (state = 'done' OR (state IN ('assigning', 'assigned') AND worker_id <> $1))`,
      [workerId, executionIds],
    );
    return rows.map((r) => r.execution_id);
  }

  /** What is placed on the worker (claimed or assigned): executions whose `lost` is due. */
  async placedOn(workerId: string): Promise<PlacedEntry[]> {
    const { rows } = await this.db.query<PlacedEntry>(
      `SELECT execution_id, job_id, worker_id FROM queue WHERE worker_id = $1 AND state IN ('assigning', 'assigned')`,
      [workerId],
    );
    return rows;
  }

  /**
   * What is placed on a worker that is gone: offline, or, with `silentMs`, stopped (deregistered,
   * so the time-out never takes it offline) and silent that long, as one that dies while it drains.
   */
  async placedOnGone(silentMs: number | null): Promise<(PlacedEntry & { worker_status: string })[]> {
    const { rows } = await this.db.query<PlacedEntry & { worker_status: string }>(
      `SELECT q.execution_id, q.job_id, q.worker_id, w.status AS worker_status FROM queue q JOIN workers w ON w.id = q.worker_id
       WHERE q.state IN ('assigning', 'assigned')
         AND (w.status = 'offline' OR (w.status = 'stopped' AND $1::float8 IS NOT NULL
              AND coalesce(w.last_heartbeat_at, w.registered_at) < now() - make_interval(secs => $1::float8 / 1000)))`,
      [silentMs],
    );
    return rows;
  }

  /** Their `lost` is published: over, if still placed on that worker. */
  async lost(entries: PlacedEntry[]): Promise<void> {
    await this.db.query(
      `UPDATE queue q SET state = 'done', done_at = now()
       FROM unnest($1::uuid[], $2::uuid[]) AS v(execution_id, worker_id)
       WHERE q.execution_id = v.execution_id AND q.worker_id = v.worker_id AND q.state IN ('assigning', 'assigned')`,
      [entries.map((e) => e.execution_id), entries.map((e) => e.worker_id)],
    );
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
