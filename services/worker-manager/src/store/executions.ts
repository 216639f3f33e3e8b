// SQL of the executions table: one row per run of a job (or of an inline definition).
import { iso, withTransaction, type Pool } from '@hodei/platform';
import { FINAL_STATUSES, type Execution, type ExecutionStatus, type JobSpec, type Progress } from '@hodei/types';

export interface ExecutionRow {
  id: string;
  job_id: string | null;
  name: string;
  worker_id: string | null;
  attempt: number;
  retry_of: string | null;
  status: ExecutionStatus;
  priority: number;
  exit_code: number | null;
  signal: string | null;
  message: string | null;
  waiting: string | null;
  progress: Progress | null;
  spec: JobSpec;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: number | null;
  last_seq: number | null;
  has_result: boolean;
  result: unknown;
  result_error: string | null;
  log_lines?: number;
}

/** Everything but the result, which can be 1 MiB: read it only for `/result`. */
export const COLUMNS = `id, job_id, name, worker_id, attempt, retry_of, status, priority, exit_code, signal, message, waiting,
  progress, spec, created_at, started_at, finished_at, duration_ms, last_seq, has_result, result_error,
  COALESCE(last_seq, (SELECT max(seq) FROM log_lines l WHERE l.execution_id = executions.id), 0) AS log_lines`;

export function toExecution(r: ExecutionRow): Execution {
  return {
    id: r.id,
    job_id: r.job_id,
    name: r.name,
    worker_id: r.worker_id,
    attempt: r.attempt,
    retry_of: r.retry_of,
    status: r.status,
    priority: r.priority,
    exit_code: r.exit_code,
    signal: r.signal,
    message: r.message,
    waiting: r.status === 'queued' ? r.waiting : null,
    progress: r.progress,
    spec: r.spec,
    created_at: iso(r.created_at)!,
    started_at: iso(r.started_at),
    finished_at: iso(r.finished_at),
    duration_ms: r.duration_ms,
    log_lines: r.log_lines ?? 0,
  };
}

export interface NewExecution {
  id: string;
  job_id: string | null;
  name: string;
  priority: number;
  spec: JobSpec;
  attempt: number;
}

export async function insertExecution(db: Pool, e: NewExecution): Promise<ExecutionRow> {
  const { rows } = await db.query<ExecutionRow>(
    `INSERT INTO executions (id, job_id, name, status, priority, spec, attempt)
     VALUES ($1, $2, $3, 'queued', $4, $5, $6) RETURNING ${COLUMNS}`,
    [e.id, e.job_id, e.name, e.priority, JSON.stringify(e.spec), e.attempt],
  );
  return rows[0]!;
}

export async function deleteExecution(db: Pool, id: string): Promise<void> {
  await db.query('DELETE FROM executions WHERE id = $1', [id]);
}

export async function getExecution(db: Pool, id: string): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(`SELECT ${COLUMNS} FROM executions WHERE id = $1`, [id]);
  return rows[0] ?? null;
}

export interface ExecutionFilter {
  job_id?: string | undefined;
  status?: ExecutionStatus | undefined;
  worker_id?: string | undefined;
  limit: number;
  offset: number;
}

export async function listExecutions(db: Pool, f: ExecutionFilter): Promise<{ rows: ExecutionRow[]; total: number }> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.job_id) where.push(`job_id = $${args.push(f.job_id)}`);
  if (f.status) where.push(`status = $${args.push(f.status)}`);
  if (f.worker_id) where.push(`worker_id = $${args.push(f.worker_id)}`);
  const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM executions ${w}`, args);
  const { rows } = await db.query<ExecutionRow>(
    `SELECT ${COLUMNS} FROM executions ${w} ORDER BY created_at DESC, id DESC LIMIT $${args.length + 1} OFFSET $${args.length + 2}`,
    [...args, f.limit, f.offset],
  );
  return { rows, total: count.rows[0]?.n ?? 0 };
}

export async function runningOnWorker(db: Pool, workerId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM executions WHERE worker_id = $1 AND status = 'running' ORDER BY started_at`,
    [workerId],
  );
  return rows.map((r) => r.id);
}

/** `waiting` only means something while queued: the scheduler's reason for not placing it yet. */
export async function setWaiting(db: Pool, id: string, waiting: string | null): Promise<void> {
  await db.query(`UPDATE executions SET waiting = $2 WHERE id = $1 AND status = 'queued'`, [id, waiting]);
}

export async function markRunning(
  db: Pool,
  id: string,
  u: { worker_id: string | null; started_at: string | null; progress: Progress | null },
): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(
    `UPDATE executions SET status = 'running', waiting = NULL,
       worker_id = COALESCE($2, worker_id), started_at = COALESCE(started_at, $3, now()),
       progress = COALESCE($4, progress)
     WHERE id = $1 AND status IN ('queued', 'running') RETURNING ${COLUMNS}`,
    [id, u.worker_id, u.started_at, u.progress === null ? null : JSON.stringify(u.progress)],
  );
  return rows[0] ?? null;
}

export interface FinalUpdate {
  status: ExecutionStatus;
  worker_id?: string | null | undefined;
  exit_code?: number | null | undefined;
  signal?: string | null | undefined;
  message?: string | null | undefined;
  started_at?: string | null | undefined;
  finished_at?: string | null | undefined;
  duration_ms?: number | null | undefined;
  last_seq?: number | undefined;
  has_result?: boolean;
  result?: unknown;
  result_error?: string | undefined;
  /** Only from these statuses (e.g. a cancel that must not end an execution that just started). */
  from?: ExecutionStatus[];
}

/** Records a final status; a final status is never overwritten (null when the execution already ended). */
export async function markFinal(db: Pool, id: string, u: FinalUpdate): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(
    `UPDATE executions SET status = $2, waiting = NULL,
       worker_id = COALESCE($3, worker_id), exit_code = $4, signal = $5, message = $6,
       started_at = COALESCE(started_at, $7),
       finished_at = COALESCE($8, now()),
       duration_ms = COALESCE($9, CASE WHEN COALESCE(started_at, $7) IS NULL THEN NULL
                       ELSE (extract(epoch FROM (COALESCE($8, now()) - COALESCE(started_at, $7))) * 1000)::integer END),
       last_seq = COALESCE($10, last_seq, (SELECT max(seq) FROM log_lines l WHERE l.execution_id = executions.id), 0),
       has_result = $11, result = $12::jsonb, result_error = $13
     WHERE id = $1 AND status <> ALL($14::text[]) AND ($15::text[] IS NULL OR status = ANY($15::text[])) RETURNING ${COLUMNS}`,
    [
      id,
      u.status,
      u.worker_id ?? null,
      u.exit_code ?? null,
      u.signal ?? null,
      u.message ?? null,
      u.started_at ?? null,
      u.finished_at ?? null,
      u.duration_ms ?? null,
      u.last_seq ?? null,
      u.has_result ?? false,
      u.has_result ? JSON.stringify(u.result ?? null) : null,
      u.result_error ?? null,
      FINAL_STATUSES,
      u.from ?? null,
    ],
  );
  return rows[0] ?? null;
}

export async function getResult(db: Pool, id: string): Promise<{ has_result: boolean; result: unknown; result_error: string | null } | null> {
  const { rows } = await db.query<{ has_result: boolean; result: unknown; result_error: string | null }>(
    'SELECT has_result, result, result_error FROM executions WHERE id = $1',
    [id],
  );
  return rows[0] ?? null;
}

export async function storageUsage(db: Pool): Promise<{ executions: { rows: number; bytes: number }; logs: { rows: number; bytes: number } }> {
  const { rows } = await db.query<{ er: number; eb: number; lr: number; lb: number }>(
    `SELECT (SELECT count(*) FROM executions) AS er, pg_total_relation_size('executions') AS eb,
            (SELECT count(*) FROM log_lines) AS lr, pg_total_relation_size('log_lines') AS lb`,
  );
  const r = rows[0]!;
  return { executions: { rows: r.er, bytes: r.eb }, logs: { rows: r.lr, bytes: r.lb } };
}

/** Deletes the executions of these jobs and their log lines; returns how many executions went. */
export async function deleteForJobs(db: Pool, jobIds: string[]): Promise<number> {
  if (jobIds.length === 0) return 0;
  return withTransaction(db, async (client) => {
    await client.query(
      'DELETE FROM log_lines WHERE execution_id IN (SELECT id FROM executions WHERE job_id = ANY($1::uuid[]))',
      [jobIds],
    );
    const res = await client.query('DELETE FROM executions WHERE job_id = ANY($1::uuid[])', [jobIds]);
    return res.rowCount ?? 0;
  });
}
