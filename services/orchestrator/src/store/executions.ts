// The executions of each job, as learnt from worker-manager's events. A final status is never
// replaced; otherwise a status only moves forward (queued → running → final), so events that
// arrive out of order across subjects cannot take a job back.
import { isFinalStatus, type ExecutionStatus } from '@hodei/types';
import { ACTIVE_EXECUTION, FINAL_EXECUTION, type Db } from './db.js';

export interface ExecutionUpdate {
  execution_id: string;
  job_id: string;
  status: ExecutionStatus;
  exit_code?: number | null | undefined;
  started_at?: string | null | undefined;
  finished_at?: string | null | undefined;
  duration_ms?: number | null | undefined;
  /** The execution this one retries (worker-manager's events for a retry carry it). */
  retry_of?: string | undefined;
  /** The attempt that retries this one (worker-manager's final event of a retried execution). */
  retried_as?: string | undefined;
}

interface ExecutionRow {
  status: ExecutionStatus;
  exit_code: number | null;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: number | null;
}

const rank = (s: ExecutionStatus): number => (isFinalStatus(s) ? 3 : s === 'running' ? 2 : s === 'queued' ? 1 : 0);

/** Records one event for an execution; the caller holds the job's row lock. */
export async function recordExecution(db: Db, u: ExecutionUpdate): Promise<void> {
  const { rows } = await db.query<ExecutionRow>(
    'SELECT status, exit_code, started_at, finished_at, duration_ms FROM job_executions WHERE execution_id = $1 FOR UPDATE',
    [u.execution_id],
  );
  const old = rows[0];
  if (!old) {
    await db.query(
      `INSERT INTO job_executions (execution_id, job_id, status, exit_code, started_at, finished_at, duration_ms, retry_of)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [u.execution_id, u.job_id, u.status, u.exit_code ?? null, u.started_at ?? null, u.finished_at ?? null, u.duration_ms ?? null, u.retry_of ?? null],
    );
    return;
  }
  // Newer information wins when the status moves forward; otherwise it only fills gaps.
  // (Timestamps: the row holds a Date, the event an ISO string; pg takes either.)
  const forward = !isFinalStatus(old.status) && rank(u.status) >= rank(old.status);
  const pick = <T>(incoming: T | null | undefined, current: T | null): T | null =>
    forward ? (incoming ?? current) : (current ?? (old.status === u.status ? (incoming ?? null) : null));
  await db.query(
    `UPDATE job_executions SET status = $2, exit_code = $3, started_at = $4, finished_at = $5, duration_ms = $6,
       retry_of = coalesce(retry_of, $7), updated_at = now()
     WHERE execution_id = $1`,
    [
      u.execution_id,
      forward ? u.status : old.status,
      pick(u.exit_code, old.exit_code),
      old.started_at ?? u.started_at ?? null,
      pick<Date | string>(u.finished_at, old.finished_at),
      pick(u.duration_ms, old.duration_ms),
      u.retry_of ?? null,
    ],
  );
}

/** Status of the job's newest execution (UUIDv7: the greatest id), or `pending` when it has none. */
export async function newestStatus(db: Db, jobId: string): Promise<ExecutionStatus> {
  const { rows } = await db.query<{ status: ExecutionStatus }>(
    'SELECT status FROM job_executions WHERE job_id = $1 ORDER BY execution_id DESC LIMIT 1',
    [jobId],
  );
  return rows[0]?.status ?? 'pending';
}

/** Executions of the job that have not ended, older ones included (the job's status shows only its newest). */
export async function countActiveExecutions(db: Db, jobId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM job_executions WHERE job_id = $1 AND status IN ${ACTIVE_EXECUTION}`,
    [jobId],
  );
  return rows[0]?.n ?? 0;
}

/** Deletes the records of executions over before `cutoff`, but each job's newest and those a
 *  running pipeline run holds; returns how many went. */
export async function deleteEndedBefore(db: Db, cutoff: Date): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM job_executions x WHERE x.status IN ${FINAL_EXECUTION} AND x.finished_at < $1
       AND EXISTS (SELECT 1 FROM job_executions n WHERE n.job_id = x.job_id AND n.execution_id > x.execution_id)
       AND NOT EXISTS (SELECT 1 FROM pipeline_run_jobs rj JOIN pipeline_runs r ON r.id = rj.run_id
                       WHERE r.status = 'running' AND rj.execution_id = x.execution_id)`,
    [cutoff],
  );
  return rowCount ?? 0;
}
