// SQL of retries: the next attempt of a failed or lost execution, waiting out its back-off in
// `queued` with `retry_due_at` set, then claimed (once, whichever replica is first) to be announced.
// A new execution waits here the same way to be announced again should its announcement not be confirmed.
import { withTransaction, type Pool } from '@hodei/platform';
import { COLUMNS, type ExecutionRow } from './executions.js';

export interface RetryRow extends ExecutionRow {
  retry_due_at: Date | null;
  avoid_workers: string[];
}

const RETRY_COLUMNS = `${COLUMNS}, retry_due_at, avoid_workers::text[] AS avoid_workers`;

export interface NewRetry {
  id: string;
  previous: ExecutionRow;
  due_at: Date;
  avoid_workers: string[];
  waiting: string;
}

/**
 * Inserts the next attempt of `previous` and notes it on the previous execution's message, in one
 * transaction. Null when that execution was already retried (a redelivered final status).
 */
export async function insertRetry(db: Pool, r: NewRetry): Promise<{ retry: RetryRow; previous: ExecutionRow } | null> {
  const p = r.previous;
  return withTransaction(db, async (c) => {
    const ins = await c.query<RetryRow>(
      `INSERT INTO executions (id, job_id, name, status, priority, spec, attempt, retry_of, retry_due_at, avoid_workers, waiting)
       VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9::uuid[], $10)
       ON CONFLICT (retry_of) WHERE retry_of IS NOT NULL DO NOTHING
       RETURNING ${RETRY_COLUMNS}`,
      [r.id, p.job_id, p.name, p.priority, JSON.stringify(p.spec), p.attempt + 1, p.id, r.due_at, r.avoid_workers, r.waiting],
    );
    const retry = ins.rows[0];
    if (!retry) return null;
    const note = `retried as ${r.id}`;
    const upd = await c.query<ExecutionRow>(
      `UPDATE executions SET message = CASE WHEN coalesce(message, '') = '' THEN $2 ELSE message || '; ' || $2 END
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [p.id, note],
    );
    return { retry, previous: upd.rows[0] ?? p };
  });
}

/** The execution that retries `id`, if any. */
export async function retryOf(db: Pool, id: string): Promise<RetryRow | null> {
  const { rows } = await db.query<RetryRow>(`SELECT ${RETRY_COLUMNS} FROM executions WHERE retry_of = $1`, [id]);
  return rows[0] ?? null;
}

/** When the earliest waiting retry is due (null: none waits). */
export async function nextDue(db: Pool): Promise<Date | null> {
  const { rows } = await db.query<{ due: Date | null }>(
    `SELECT min(retry_due_at) AS due FROM executions WHERE retry_due_at IS NOT NULL AND status = 'queued'`,
  );
  return rows[0]?.due ?? null;
}

/** Claims every queued execution due to be announced (cancelled ones are left alone): each is due
 *  again `graceMs` from now, unless its announcement is confirmed (`announced`) before. */
export async function claimDue(db: Pool, limit: number, graceMs: number): Promise<RetryRow[]> {
  const { rows } = await db.query<RetryRow>(
    `UPDATE executions SET retry_due_at = date_trunc('milliseconds', now() + $2 * interval '1 millisecond')
     WHERE id IN (SELECT id FROM executions WHERE retry_due_at <= now() AND status = 'queued'
                  ORDER BY retry_due_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING ${RETRY_COLUMNS}`,
    [limit, graceMs],
  );
  return rows;
}

/** Announcing a claimed retry failed: it waits again, due at `at`. */
export async function unclaim(db: Pool, id: string, at: Date): Promise<void> {
  await db.query(`UPDATE executions SET retry_due_at = $2 WHERE id = $1 AND status = 'queued'`, [id, at]);
}

/** A queued execution whose queued event NATS did not confirm: due to be announced again now (as a
 *  due retry is), `waiting` saying so. Null when it is not queued any more. */
export async function announceAgain(db: Pool, id: string, waiting: string): Promise<RetryRow | null> {
  const { rows } = await db.query<RetryRow>(
    `UPDATE executions SET retry_due_at = now(), waiting = $2 WHERE id = $1 AND status = 'queued' RETURNING ${RETRY_COLUMNS}`,
    [id, waiting],
  );
  return rows[0] ?? null;
}

/** The announcement of a claimed execution confirmed: it is due no more (unless claimed or marked
 *  again meanwhile), and a new execution's note that it was not (`waiting`) goes, unless replaced. */
export async function announced(db: Pool, r: RetryRow): Promise<void> {
  await db.query(
    `UPDATE executions SET retry_due_at = CASE WHEN retry_due_at = $2 THEN NULL ELSE retry_due_at END,
       waiting = CASE WHEN retry_of IS NULL AND waiting = $3 THEN NULL ELSE waiting END
     WHERE id = $1 AND status = 'queued'`,
    [r.id, r.retry_due_at, r.waiting],
  );
}

/** New executions whose announcement NATS confirmed: not due to be announced again. */
export async function confirmed(db: Pool, ids: string[]): Promise<void> {
  await db.query(`UPDATE executions SET retry_due_at = NULL WHERE id = ANY($1::uuid[]) AND retry_of IS NULL AND retry_due_at IS NOT NULL`, [ids]);
}

/** Retries waiting out their back-off. */
export async function countWaiting(db: Pool): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM executions WHERE retry_due_at IS NOT NULL AND status = 'queued' AND retry_of IS NOT NULL`,
  );
  return rows[0]?.n ?? 0;
}
