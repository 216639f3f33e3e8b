// SQL of the executions table: one row per run of a job (or of an inline definition).
import { fromRecords, idPrefixCondition, iso, records, tableSize, type Pool } from '@hodei/platform';
import { FINAL_STATUSES, type Execution, type ExecutionCleanupCounts, type ExecutionStatus, type JobSpec, type Progress } from '@hodei/types';

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

/** When the execution took its current status, as recorded (finished_at, started_at, created_at): the
 *  `timestamp` of its status events, so one sent live and the same one replayed to a client that
 *  connects later agree. */
export function statusTimestamp(r: ExecutionRow): string {
  return (r.finished_at ?? r.started_at ?? r.created_at).toISOString();
}

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

/** Many inserts in one statement; the rows in the order given. Each is due to be announced again
 *  `announceAfterMs` from now (retry_due_at): its announcement may never be made (a crash before it). */
export async function insertExecutions(db: Pool, es: NewExecution[], announceAfterMs: number): Promise<ExecutionRow[]> {
  const { rows } = await db.query<ExecutionRow>(
    `INSERT INTO executions (id, job_id, name, status, priority, spec, attempt, retry_due_at)
     SELECT v_id, v_job, v_name, 'queued', v_priority, v_spec, v_attempt, now() + $2 * interval '1 millisecond'
     FROM jsonb_to_recordset($1::jsonb) AS v(v_id uuid, v_job uuid, v_name text, v_priority integer, v_spec jsonb, v_attempt integer)
     RETURNING ${COLUMNS}`,
    [JSON.stringify(es.map((e) => ({ v_id: e.id, v_job: e.job_id, v_name: e.name, v_priority: e.priority, v_spec: e.spec, v_attempt: e.attempt }))), announceAfterMs],
  );
  // an insert without ON CONFLICT returns every row or fails as a whole
  return inOrder(es, rows).map((r) => r!);
}

/** The returned rows lined up with the items (RETURNING has no order); null where none came back. */
function inOrder<R extends { id: string }>(items: { id: string }[], rows: R[]): Array<R | null> {
  const byId = new Map(rows.map((r) => [r.id, r]));
  return items.map((i) => byId.get(i.id) ?? null);
}

export async function deleteExecution(db: Pool, id: string): Promise<void> {
  await db.query('DELETE FROM executions WHERE id = $1', [id]);
}

export async function getExecution(db: Pool, id: string): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(`SELECT ${COLUMNS} FROM executions WHERE id = $1`, [id]);
  return rows[0] ?? null;
}

export interface ExecutionFilter {
  id_prefix?: string | undefined;
  job_id?: string | undefined;
  status?: ExecutionStatus | undefined;
  worker_id?: string | undefined;
  retry_of?: string | undefined;
  limit: number;
  offset: number;
}

export async function listExecutions(db: Pool, f: ExecutionFilter): Promise<{ rows: ExecutionRow[]; total: number }> {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.id_prefix) where.push(idPrefixCondition('id', f.id_prefix, (v) => `$${args.push(v)}`));
  if (f.job_id) where.push(`job_id = $${args.push(f.job_id)}`);
  if (f.status) where.push(`status = $${args.push(f.status)}`);
  if (f.worker_id) where.push(`worker_id = $${args.push(f.worker_id)}`);
  if (f.retry_of) where.push(`retry_of = $${args.push(f.retry_of)}`);
  const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM executions ${w}`, args);
  // the page's ids first, from an index alone: an offset then skips index entries, not rows whose
  // columns (and log_lines) were each read and computed only to be dropped
  const { rows } = await db.query<ExecutionRow>(
    `SELECT ${COLUMNS} FROM executions
     WHERE id = ANY (ARRAY(SELECT id FROM executions ${w} ORDER BY created_at DESC, id DESC LIMIT $${args.length + 1} OFFSET $${args.length + 2}))
     ORDER BY created_at DESC, id DESC`,
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
export async function setWaiting(db: Pool, items: { id: string; waiting: string | null }[]): Promise<void> {
  await db.query(
    `UPDATE executions SET waiting = v_waiting
     FROM ${fromRecords('$1', 'v_id uuid, v_waiting text')}
     WHERE id = v_id AND status = 'queued'`,
    [records(items.map((i) => ({ v_id: i.id, v_waiting: i.waiting })))],
  );
}

export interface RunningUpdate {
  id: string;
  worker_id: string | null;
  started_at: string | null;
  progress: Progress | null;
}

/** Marks executions running (or updates their progress); per item the row and whether it was
 *  running already, or null when it is not queued or running (ended, cancelled, unknown). */
export async function markRunning(db: Pool, items: RunningUpdate[]): Promise<Array<{ row: ExecutionRow; wasRunning: boolean } | null>> {
  const { rows } = await db.query<ExecutionRow & { was_running: boolean }>(
    `WITH v AS (SELECT v.* FROM ${fromRecords('$1', 'v_id uuid, v_worker uuid, v_started timestamptz, v_progress jsonb')}),
          before AS (SELECT e.id AS b_id, e.status AS b_status FROM executions e JOIN v ON e.id = v.v_id FOR UPDATE OF e)
     UPDATE executions SET status = 'running', waiting = NULL, retry_due_at = NULL,
       worker_id = COALESCE(v_worker, worker_id), started_at = COALESCE(started_at, v_started, now()),
       progress = COALESCE(v_progress, progress)
     FROM v JOIN before ON b_id = v_id
     WHERE id = v_id AND status IN ('queued', 'running') RETURNING ${COLUMNS}, b_status = 'running' AS was_running`,
    [records(items.map((i) => ({ v_id: i.id, v_worker: i.worker_id, v_started: i.started_at, v_progress: i.progress })))],
  );
  return inOrder(items, rows).map((r) => (r ? { row: r, wasRunning: r.was_running } : null));
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

const FINAL_SET = `status = v_status, waiting = NULL, retry_due_at = NULL,
       worker_id = COALESCE(v_worker, worker_id), exit_code = v_exit, signal = v_signal, message = v_message,
       started_at = COALESCE(started_at, v_started),
       finished_at = COALESCE(v_finished, now()),
       duration_ms = COALESCE(v_duration, CASE WHEN COALESCE(started_at, v_started) IS NULL THEN NULL
                       ELSE (extract(epoch FROM (COALESCE(v_finished, now()) - COALESCE(started_at, v_started))) * 1000)::integer END),
       last_seq = COALESCE(v_last_seq, last_seq, (SELECT max(seq) FROM log_lines l WHERE l.execution_id = executions.id), 0),
       has_result = v_has_result, result = CASE WHEN v_has_result THEN v_result END, result_error = v_result_error`;

const finalRecord = (id: string, u: FinalUpdate) => ({
  v_id: id,
  v_status: u.status,
  v_worker: u.worker_id ?? null,
  v_exit: u.exit_code ?? null,
  v_signal: u.signal ?? null,
  v_message: u.message ?? null,
  v_started: u.started_at ?? null,
  v_finished: u.finished_at ?? null,
  v_duration: u.duration_ms ?? null,
  v_last_seq: u.last_seq ?? null,
  v_has_result: u.has_result ?? false,
  v_result: u.has_result ? (u.result ?? null) : null,
  v_result_error: u.result_error ?? null,
});

const FINAL_RECORD = fromRecords(
  '$1',
  `v_id uuid, v_status text, v_worker uuid, v_exit integer, v_signal text, v_message text, v_started timestamptz,
   v_finished timestamptz, v_duration integer, v_last_seq integer, v_has_result boolean, v_result jsonb, v_result_error text`,
);

/** Records a final status; a final status is never overwritten (null when the execution already ended). */
export async function markFinal(db: Pool, id: string, u: FinalUpdate): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(
    `UPDATE executions SET ${FINAL_SET} FROM ${FINAL_RECORD}
     WHERE id = v_id AND status <> ALL($2::text[]) AND ($3::text[] IS NULL OR status = ANY($3::text[])) RETURNING ${COLUMNS}`,
    [records([finalRecord(id, u)]), FINAL_STATUSES, u.from ?? null],
  );
  return rows[0] ?? null;
}

export const CANCELLED_BEFORE_START = 'cancelled before it started';

/** A worker reports it started an execution recorded `CANCELLED_BEFORE_START` (the cancel reached
 *  no worker in time): the record says so instead. Null when it is not such a record. */
export async function startedAfterCancel(db: Pool, id: string, workerId: string, startedAt: string | null, outcome: string): Promise<ExecutionRow | null> {
  const { rows } = await db.query<ExecutionRow>(
    `UPDATE executions SET worker_id = $2, started_at = COALESCE($3::timestamptz, started_at), message = $4
     WHERE id = $1 AND status = 'cancelled' AND worker_id IS NULL AND message = $5 RETURNING ${COLUMNS}`,
    [id, workerId, startedAt, `cancelled, but worker ${workerId} had started it (${outcome})`, CANCELLED_BEFORE_START],
  );
  return rows[0] ?? null;
}

/** Many final statuses in one statement; per item the row, or null when it had ended already. */
export async function markFinals(db: Pool, items: Array<{ id: string; update: FinalUpdate }>): Promise<Array<ExecutionRow | null>> {
  const { rows } = await db.query<ExecutionRow>(
    `UPDATE executions SET ${FINAL_SET} FROM ${FINAL_RECORD}
     WHERE id = v_id AND status <> ALL($2::text[]) RETURNING ${COLUMNS}`,
    [records(items.map((i) => finalRecord(i.id, i.update))), FINAL_STATUSES],
  );
  return inOrder(items, rows);
}

export async function getResult(db: Pool, id: string): Promise<{ has_result: boolean; result: unknown; result_error: string | null } | null> {
  const { rows } = await db.query<{ has_result: boolean; result: unknown; result_error: string | null }>(
    'SELECT has_result, result, result_error FROM executions WHERE id = $1',
    [id],
  );
  return rows[0] ?? null;
}

export async function storageUsage(db: Pool): Promise<{ executions: { rows: number; bytes: number }; logs: { rows: number; bytes: number } }> {
  return { executions: await tableSize(db, 'executions'), logs: await tableSize(db, 'log_lines') };
}

/** Executions one cleanup pass picks, and log lines one of its statements deletes, at most: each
 *  statement holds its rows' locks, and PostgreSQL's memory and WAL, for a bounded moment. */
export const CLEANUP_EXECUTIONS = 1000;
export const CLEANUP_LINES = 50_000;

/** An execution (alias e) that a cleanup of the jobs $1 with finished_before $2 deletes ($3: FINAL_STATUSES). */
const DOOMED = `(e.job_id = ANY($1::uuid[])
  OR (e.status = ANY($3::text[]) AND e.finished_at < $2
      AND (e.job_id IS NULL OR EXISTS (SELECT 1 FROM executions n WHERE n.job_id = e.job_id AND n.created_at > e.created_at))))`;

/**
 * Deletes the executions of these jobs and, with `finishedBefore`, every execution over before
 * then that is not its job's newest (one of no job too: POST /execute with a command), with their
 * log lines; returns how many executions went, of which how many of jobs that stay and of no job.
 * With `dryRun`, counts them and deletes nothing. Oldest first, CLEANUP_EXECUTIONS at a time, each
 * one's lines before it, CLEANUP_LINES per statement (a month of logs was one statement of minutes
 * that held every row it deleted): the service answers meanwhile, and a cleanup cut short leaves
 * only whole executions, of which the next one deletes the rest.
 */
export async function deleteForJobs(db: Pool, jobIds: string[], finishedBefore?: Date, dryRun = false): Promise<ExecutionCleanupCounts> {
  const counts: ExecutionCleanupCounts = { executions: 0, older_executions: 0, adhoc_executions: 0 };
  if (jobIds.length === 0 && !finishedBefore) return counts;
  const args = [jobIds, finishedBefore ?? null, FINAL_STATUSES];
  const tally = `count(*)::int AS executions,
      count(*) FILTER (WHERE job_id IS NOT NULL AND job_id <> ALL($1::uuid[]))::int AS older_executions,
      count(*) FILTER (WHERE job_id IS NULL)::int AS adhoc_executions`;
  if (dryRun) return (await db.query<ExecutionCleanupCounts>(`SELECT ${tally} FROM executions e WHERE ${DOOMED}`, args)).rows[0]!;
  // the index on (created_at, id) walked once, from where the last pass stopped
  let after: [Date | string, string] = ['-infinity', '00000000-0000-0000-0000-000000000000'];
  for (;;) {
    const { rows } = await db.query<{ id: string; created_at: Date }>(
      `SELECT id, created_at FROM executions e WHERE (e.created_at, e.id) > ($4::timestamptz, $5::uuid) AND ${DOOMED}
       ORDER BY e.created_at, e.id LIMIT $6`,
      [...args, ...after, CLEANUP_EXECUTIONS],
    );
    if (rows.length === 0) return counts;
    const ids = rows.map((r) => r.id);
    let deleted: number | null;
    do {
      ({ rowCount: deleted } = await db.query(
        'DELETE FROM log_lines WHERE ctid = ANY (ARRAY(SELECT ctid FROM log_lines WHERE execution_id = ANY($1::uuid[]) LIMIT $2))',
        [ids, CLEANUP_LINES],
      ));
    } while ((deleted ?? 0) >= CLEANUP_LINES);
    const gone = await db.query<ExecutionCleanupCounts>(
      `WITH gone AS (DELETE FROM executions WHERE id = ANY($2::uuid[]) RETURNING job_id) SELECT ${tally} FROM gone`,
      [jobIds, ids],
    );
    for (const k of ['executions', 'older_executions', 'adhoc_executions'] as const) counts[k] += gone.rows[0]![k];
    if (rows.length < CLEANUP_EXECUTIONS) return counts;
    const last = rows[rows.length - 1]!;
    after = [last.created_at, last.id];
  }
}
