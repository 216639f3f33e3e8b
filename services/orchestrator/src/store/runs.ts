// SQL for pipeline runs and the state of each job inside a run.
import { iso } from '@hodei/platform';
import type { ExecutionStatus, PipelineRun, PipelineRunJobStatus, PipelineRunStatus } from '@hodei/types';
import type { Db } from './db.js';
import { UNFINISHED_RUN_JOB, Where } from './db.js';

interface RunRow {
  id: string;
  pipeline_id: string;
  status: PipelineRunStatus;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  env: Record<string, string>;
}

export interface RunJobRow {
  job_id: string;
  name: string;
  depends_on: string[];
  status: PipelineRunJobStatus;
  execution_id: string | null;
  message: string | null;
  exit_code: number | null;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: string | number | null;
  /** Status of the recorded execution as its events said (null before the first one). */
  execution_status: ExecutionStatus | null;
  /** Nobody holds the start's claim: its last try found worker-manager unavailable, the sweep tries again. */
  unclaimed: boolean;
}

function toRun(r: RunRow, jobs: RunJobRow[]): PipelineRun {
  return {
    id: r.id,
    pipeline_id: r.pipeline_id,
    status: r.status,
    jobs: jobs.map((j) => ({
      job_id: j.job_id,
      name: j.name,
      depends_on: j.depends_on,
      status: j.status,
      execution_id: j.execution_id,
      message: j.message,
      exit_code: j.exit_code,
      started_at: iso(j.started_at),
      finished_at: iso(j.finished_at),
      duration_ms: j.duration_ms === null ? null : Number(j.duration_ms),
    })),
    env: r.env,
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
    finished_at: iso(r.finished_at),
  };
}

export async function insertRun(
  db: Db,
  id: string,
  pipelineId: string,
  jobs: Array<{ id: string; name: string; depends_on: string[] }>,
  env: Record<string, string>,
): Promise<void> {
  await db.query('INSERT INTO pipeline_runs (id, pipeline_id, env) VALUES ($1, $2, $3)', [id, pipelineId, JSON.stringify(env)]);
  await db.query(
    `INSERT INTO pipeline_run_jobs (run_id, position, job_id, name, depends_on)
     SELECT $1, j.position, j.job_id, j.name, ARRAY(SELECT jsonb_array_elements_text(j.depends_on))::uuid[]
     FROM jsonb_to_recordset($2::jsonb) AS j(position integer, job_id uuid, name text, depends_on jsonb)`,
    [id, JSON.stringify(jobs.map((j, position) => ({ position, job_id: j.id, name: j.name, depends_on: j.depends_on })))],
  );
}

export async function runJobs(db: Db, runId: string): Promise<RunJobRow[]> {
  const { rows } = await db.query<RunJobRow>(
    `SELECT j.job_id, j.name, j.depends_on, j.status, j.execution_id, j.message,
            e.exit_code, e.started_at, e.finished_at, e.duration_ms, e.status AS execution_status, j.starting_at IS NULL AS unclaimed
     FROM pipeline_run_jobs j LEFT JOIN job_executions e ON e.execution_id = j.execution_id
     WHERE j.run_id = $1 ORDER BY j.position`,
    [runId],
  );
  return rows;
}

export async function getRun(db: Db, id: string): Promise<PipelineRun | null> {
  const { rows } = await db.query<RunRow>('SELECT * FROM pipeline_runs WHERE id = $1', [id]);
  return rows[0] ? toRun(rows[0], await runJobs(db, id)) : null;
}

/**
 * The run with the id its event stream gives what it read: the xmin of a snapshot taken before
 * the read, so every change the read may have missed was made by a transaction at or after it.
 */
export async function getRunForEvents(db: Db, id: string): Promise<{ run: PipelineRun; eventId: string } | null> {
  const { rows } = await db.query<RunRow & { event_id: string }>(
    'SELECT *, pg_snapshot_xmin(pg_current_snapshot())::text AS event_id FROM pipeline_runs WHERE id = $1',
    [id],
  );
  return rows[0] ? { run: toRun(rows[0], await runJobs(db, id)), eventId: rows[0].event_id } : null;
}

/** Jobs of the run changed (status or execution) by the transaction `eventId` or a later one: what a stream resumed from that id sends again. */
export async function jobsChangedSince(db: Db, runId: string, eventId: string): Promise<Set<string>> {
  const { rows } = await db.query<{ job_id: string }>('SELECT job_id FROM pipeline_run_jobs WHERE run_id = $1 AND changed_xid >= $2::xid8', [runId, eventId]);
  return new Set(rows.map((r) => r.job_id));
}

/** Locks the run row for the rest of the transaction; null when it does not exist. */
export interface LockedRun {
  pipeline_id: string;
  status: PipelineRunStatus;
  cancel_requested: boolean;
  env: Record<string, string>;
}

export async function lockRun(db: Db, id: string): Promise<LockedRun | null> {
  const { rows } = await db.query<LockedRun>(
    'SELECT pipeline_id, status, cancel_requested, env FROM pipeline_runs WHERE id = $1 FOR UPDATE',
    [id],
  );
  return rows[0] ?? null;
}

export async function requestCancel(db: Db, id: string): Promise<void> {
  await db.query('UPDATE pipeline_runs SET cancel_requested = true, updated_at = now() WHERE id = $1', [id]);
}

export async function deleteRun(db: Db, id: string): Promise<void> {
  await db.query('DELETE FROM pipeline_runs WHERE id = $1', [id]);
}

const ENDED_BEFORE = "status <> 'running' AND finished_at < $1";

/** Deletes the runs over before `cutoff` with their jobs' rows; returns how many went. */
export async function deleteEndedBefore(db: Db, cutoff: Date): Promise<number> {
  const { rowCount } = await db.query(`DELETE FROM pipeline_runs WHERE ${ENDED_BEFORE}`, [cutoff]);
  return rowCount ?? 0;
}

/** How many runs deleteEndedBefore would delete. */
export async function countEndedBefore(db: Db, cutoff: Date): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pipeline_runs WHERE ${ENDED_BEFORE}`, [cutoff]);
  return rows[0]?.n ?? 0;
}

export async function listRuns(
  db: Db,
  pipelineId: string,
  q: { status?: PipelineRunStatus | undefined; limit: number; offset: number },
): Promise<{ items: PipelineRun[]; total: number }> {
  const w = new Where().add((p) => `pipeline_id = ${p}`, pipelineId);
  if (q.status) w.add((p) => `status = ${p}`, q.status);
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM pipeline_runs ${w}`, w.values);
  const limit = w.param(q.limit);
  const offset = w.param(q.offset);
  const { rows } = await db.query<RunRow>(`SELECT * FROM pipeline_runs ${w} ORDER BY id DESC LIMIT ${limit} OFFSET ${offset}`, w.values);
  const items: PipelineRun[] = [];
  for (const r of rows) items.push(toRun(r, await runJobs(db, r.id)));
  return { items, total: count.rows[0]?.n ?? 0 };
}

/**
 * Runs with a job on this execution, or on an earlier one of the same job that a retry follows (lost, failed, or queued awaiting the retry).
 * With `status`, a run whose job already shows that status for this execution is left out: a repeated event (progress, or
 * worker-manager's copy of the worker's final status) has nothing to change there.
 */
export async function runsForExecution(db: Db, executionId: string, jobId: string, status?: string): Promise<string[]> {
  const { rows } = await db.query<{ run_id: string }>(
    `SELECT DISTINCT run_id FROM pipeline_run_jobs
     WHERE (execution_id = $1 AND ($3::text IS NULL OR status IS DISTINCT FROM $3))
        OR (job_id = $2 AND execution_id < $1 AND status IN ('lost', 'failed', 'queued'))`,
    [executionId, jobId, status ?? null],
  );
  return rows.map((r) => r.run_id);
}

/** The latest retry of `executionId` (following retry_of), if it was retried. */
export async function latestRetry(db: Db, executionId: string): Promise<{ execution_id: string; status: ExecutionStatus } | null> {
  const { rows } = await db.query<{ execution_id: string; status: ExecutionStatus }>(
    `WITH RECURSIVE retries AS (
       SELECT execution_id, status, 1 AS depth FROM job_executions WHERE retry_of = $1
       UNION ALL
       SELECT e.execution_id, e.status, r.depth + 1 FROM job_executions e JOIN retries r ON e.retry_of = r.execution_id
     )
     SELECT execution_id, status FROM retries ORDER BY depth DESC LIMIT 1`,
    [executionId],
  );
  return rows[0] ?? null;
}

/** Sets one job of a run (only while it has `onlyIfStatus`, when given); its name when it did, else null. */
export async function updateRunJob(
  db: Db,
  runId: string,
  jobId: string,
  v: { status: PipelineRunJobStatus; execution_id?: string | null; message?: string | null },
  onlyIfStatus?: PipelineRunJobStatus,
): Promise<string | null> {
  const { rows } = await db.query<{ name: string }>(
    `UPDATE pipeline_run_jobs SET status = $3,
       starting_at = CASE WHEN $3 = 'starting' THEN now() ELSE starting_at END,
       execution_id = CASE WHEN $4 THEN $5::uuid ELSE execution_id END,
       message = CASE WHEN $6 THEN $7 ELSE message END
     WHERE run_id = $1 AND job_id = $2 AND ($8::text IS NULL OR status = $8)
     RETURNING name`,
    [runId, jobId, v.status, v.execution_id !== undefined, v.execution_id ?? null, v.message !== undefined, v.message ?? null, onlyIfStatus ?? null],
  );
  return rows[0]?.name ?? null;
}

/**
 * A claimed start not sent yet, of a run asked to cancel: the job is `skipped` instead; its name
 * when it was, else null (the run goes on: start it).
 */
export async function skipStartOfCancelled(db: Db, runId: string, jobId: string, message: string): Promise<string | null> {
  const { rows } = await db.query<{ name: string }>(
    `UPDATE pipeline_run_jobs j SET status = 'skipped', message = $3
     FROM pipeline_runs r
     WHERE r.id = j.run_id AND r.cancel_requested AND j.run_id = $1 AND j.job_id = $2 AND j.status = 'starting' AND j.execution_id IS NULL
     RETURNING j.name`,
    [runId, jobId, message],
  );
  return rows[0]?.name ?? null;
}

/**
 * A start worker-manager surely did not take: the job stays `starting`, unclaimed (the sweep tries
 * it again), with `waiting` as its message; once worker-manager has been unavailable for `waitMs`
 * since the first such try, the job is `failed` with `failed` instead. Null when the job is no
 * longer starting; `first`: this was the first such try.
 */
export async function startUnavailable(
  db: Db,
  runId: string,
  jobId: string,
  waitMs: number,
  messages: { waiting: string; failed: string },
): Promise<{ name: string; status: 'starting' | 'failed'; message: string; first: boolean } | null> {
  const { rows } = await db.query<{ name: string; status: 'starting' | 'failed'; message: string; first: boolean }>(
    `WITH old AS (
       SELECT start_unavailable_since FROM pipeline_run_jobs
       WHERE run_id = $1 AND job_id = $2 AND status = 'starting' AND execution_id IS NULL FOR UPDATE
     ), next AS (
       SELECT start_unavailable_since IS NULL AS first,
              coalesce(start_unavailable_since, now()) <= now() - make_interval(secs => $3::double precision / 1000) AS over
       FROM old
     )
     UPDATE pipeline_run_jobs j SET
       start_unavailable_since = coalesce(j.start_unavailable_since, now()),
       starting_at = NULL,
       status = CASE WHEN next.over THEN 'failed' ELSE 'starting' END,
       message = CASE WHEN next.over THEN $5 ELSE $4 END
     FROM next
     WHERE j.run_id = $1 AND j.job_id = $2
     RETURNING j.name, j.status, j.message, next.first`,
    [runId, jobId, waitMs, messages.waiting, messages.failed],
  );
  return rows[0] ?? null;
}

export interface RunJobChange {
  job_id: string;
  status: PipelineRunJobStatus;
  execution_id: string | null;
  /** Replaces the job's message (why it was skipped); absent: the message stays. */
  message?: string;
}

/** Sets the status and execution (and a message, where given) of several jobs of a run in one statement. */
export async function updateRunJobs(db: Db, runId: string, changes: RunJobChange[]): Promise<void> {
  if (!changes.length) return;
  await db.query(
    `UPDATE pipeline_run_jobs j SET status = c.status,
       starting_at = CASE WHEN c.status = 'starting' THEN now() ELSE j.starting_at END,
       execution_id = c.execution_id,
       message = coalesce(c.message, j.message)
     FROM jsonb_to_recordset($2::jsonb) AS c(job_id uuid, status text, execution_id uuid, message text)
     WHERE j.run_id = $1 AND j.job_id = c.job_id`,
    [runId, JSON.stringify(changes)],
  );
}

export async function setRunStatus(db: Db, runId: string, status: PipelineRunStatus): Promise<void> {
  await db.query(
    `UPDATE pipeline_runs SET status = $2, updated_at = now(),
       finished_at = CASE WHEN $2 = 'running' THEN NULL ELSE coalesce(finished_at, now()) END
     WHERE id = $1 AND status IS DISTINCT FROM $2`,
    [runId, status],
  );
}

/**
 * Takes over starts claimed more than `staleMs` ago that never recorded an execution (whoever
 * claimed them stopped mid-start), and those nobody claims (worker-manager was unavailable); each
 * returned row is claimed again, for `staleMs` more.
 */
export interface StaleClaim {
  run_id: string;
  job_id: string;
  pipeline_id: string;
  env: Record<string, string>;
}

export async function claimStaleStarts(db: Db, staleMs: number): Promise<StaleClaim[]> {
  const { rows } = await db.query<StaleClaim>(
    `UPDATE pipeline_run_jobs j SET starting_at = now()
     FROM pipeline_runs r
     WHERE r.id = j.run_id AND j.status = 'starting' AND j.execution_id IS NULL
       AND coalesce(j.starting_at, '-infinity') < now() - make_interval(secs => $1::double precision / 1000)
     RETURNING j.run_id, j.job_id, r.pipeline_id, r.env`,
    [staleMs],
  );
  return rows;
}

/** Running runs of which the job has yet to finish (waiting, starting, queued or running), oldest first. */
export async function runsAwaitingJob(db: Db, jobId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT r.id FROM pipeline_runs r JOIN pipeline_run_jobs j ON j.run_id = r.id
     WHERE j.job_id = $1 AND r.status = 'running' AND j.status IN ${UNFINISHED_RUN_JOB} ORDER BY r.id`,
    [jobId],
  );
  return rows.map((r) => r.id);
}

/** Ids of the pipeline's runs still running, oldest first. */
export async function runningRunsOf(db: Db, pipelineId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>("SELECT id FROM pipeline_runs WHERE pipeline_id = $1 AND status = 'running' ORDER BY id", [pipelineId]);
  return rows.map((r) => r.id);
}

/** Claims of starts still in progress made fresh again, so claimStaleStarts leaves them alone. */
export async function renewClaims(db: Db, runId: string, jobIds: string[]): Promise<void> {
  if (!jobIds.length) return;
  await db.query(
    `UPDATE pipeline_run_jobs SET starting_at = now()
     WHERE run_id = $1 AND job_id = ANY ($2::uuid[]) AND status = 'starting' AND execution_id IS NULL`,
    [runId, jobIds],
  );
}

/** Executions still queued or running of the runs asked to cancel. */
export async function executionsToCancel(db: Db): Promise<Array<{ run_id: string; execution_id: string }>> {
  const { rows } = await db.query<{ run_id: string; execution_id: string }>(
    `SELECT j.run_id, j.execution_id FROM pipeline_run_jobs j JOIN pipeline_runs r ON r.id = j.run_id
     WHERE r.status = 'running' AND r.cancel_requested AND j.execution_id IS NOT NULL AND j.status IN ('queued', 'running')
     ORDER BY j.run_id, j.position`,
  );
  return rows;
}

/** Ids of the runs still running. */
export async function runningRunIds(db: Db): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>("SELECT id FROM pipeline_runs WHERE status = 'running' ORDER BY id");
  return rows.map((r) => r.id);
}

/**
 * After recording a job's execution: whether the run was asked to cancel meanwhile, and what the
 * execution's events said so far (read after the record committed, so an event handled before it
 * is seen here, and one handled after it finds the record).
 */
export async function afterStart(db: Db, runId: string, executionId: string): Promise<{ cancel_requested: boolean; execution_status: ExecutionStatus | null }> {
  const { rows } = await db.query<{ cancel_requested: boolean; execution_status: ExecutionStatus | null }>(
    `SELECT r.cancel_requested, (SELECT status FROM job_executions WHERE execution_id = $2) AS execution_status
     FROM pipeline_runs r WHERE r.id = $1`,
    [runId, executionId],
  );
  return rows[0] ?? { cancel_requested: false, execution_status: null };
}

/**
 * The run jobs on this execution that were `queued` now show `running` (nothing else in a run
 * follows from that); returns what a job event needs.
 */
export async function markRunning(db: Db, executionId: string): Promise<Array<{ run_id: string; pipeline_id: string; job_id: string; name: string; message: string | null }>> {
  const { rows } = await db.query<{ run_id: string; pipeline_id: string; job_id: string; name: string; message: string | null }>(
    `UPDATE pipeline_run_jobs j SET status = 'running'
     FROM pipeline_runs r
     WHERE r.id = j.run_id AND j.execution_id = $1 AND j.status = 'queued'
     RETURNING j.run_id, r.pipeline_id, j.job_id, j.name, j.message`,
    [executionId],
  );
  return rows;
}

/**
 * Under the run's lock: the run job on this execution shows `completed` when the execution's
 * recorded status is `completed`, the job was queued or running, and no job of the run depends
 * on it; null when any of that is not so (derive the whole run instead). `others_active`: another
 * job of the run is still waiting, starting, queued or running.
 */
export async function completeLeaf(
  db: Db,
  runId: string,
  executionId: string,
): Promise<{ job_id: string; name: string; message: string | null; exit_code: number | null; others_active: boolean } | null> {
  const { rows } = await db.query<{ job_id: string; name: string; message: string | null; exit_code: number | null; others_active: boolean }>(
    `WITH done AS (
       UPDATE pipeline_run_jobs j SET status = 'completed'
       FROM job_executions e
       WHERE j.run_id = $1 AND j.execution_id = $2 AND j.status IN ('queued', 'running')
         AND e.execution_id = j.execution_id AND e.status = 'completed'
         AND NOT EXISTS (SELECT 1 FROM pipeline_run_jobs d WHERE d.run_id = $1 AND j.job_id = ANY(d.depends_on))
       RETURNING j.job_id, j.name, j.message, e.exit_code
     )
     SELECT done.*, EXISTS (
         SELECT 1 FROM pipeline_run_jobs a
         WHERE a.run_id = $1 AND a.job_id <> done.job_id AND a.status IN ${UNFINISHED_RUN_JOB}
       ) AS others_active
     FROM done`,
    [runId, executionId],
  );
  return rows[0] ?? null;
}
