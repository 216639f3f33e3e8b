// SQL for job definitions and their current status.
import { idPrefixCondition, iso } from '@hodei/platform';
import { PRIORITY_NAMES, type ExecutionStatus, type Job, type JobListQuery } from '@hodei/types';
import type { Db } from './db.js';
import { ACTIVE_EXECUTION, FINAL_EXECUTION, UNFINISHED_RUN_JOB, Where } from './db.js';

/** A job definition as written to the table (defaults already applied). */
export interface JobValues {
  name: string;
  description: string | null;
  pipeline_id: string | null;
  command: string | null;
  script: string | null;
  args: string[];
  env: Record<string, string>;
  working_dir: string | null;
  timeout_seconds: number | null;
  priority: number;
  resources: { cpu_cores?: number; memory_bytes?: number };
  tags: string[];
  labels: Record<string, string>;
  max_retries: number;
  retry_backoff_seconds: number;
  depends_on: string[];
}

interface JobRow extends JobValues {
  id: string;
  status: ExecutionStatus;
  created_at: Date;
  updated_at: Date;
  e_id: string | null;
  e_status: ExecutionStatus | null;
  e_exit_code: number | null;
  e_started_at: Date | null;
  e_finished_at: Date | null;
  e_duration_ms: number | null;
}

function toJob(r: JobRow): Job {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    pipeline_id: r.pipeline_id,
    status: r.status,
    command: r.command,
    script: r.script,
    args: r.args,
    env: r.env,
    working_dir: r.working_dir,
    timeout_seconds: r.timeout_seconds,
    priority: r.priority,
    resources: r.resources,
    tags: r.tags,
    labels: r.labels,
    max_retries: r.max_retries,
    retry_backoff_seconds: r.retry_backoff_seconds,
    depends_on: r.depends_on,
    last_execution:
      r.e_id && r.e_status // absent on a row straight from INSERT … RETURNING
        ? {
            id: r.e_id,
            status: r.e_status,
            exit_code: r.e_exit_code,
            started_at: iso(r.e_started_at),
            finished_at: iso(r.e_finished_at),
            duration_ms: r.e_duration_ms === null ? null : Number(r.e_duration_ms),
          }
        : null,
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
  };
}

/** The unique index on (pipeline_id, name): a pipeline's jobs have distinct names. */
export const NAME_IN_PIPELINE_KEY = 'jobs_pipeline_name_key';

/** Jobs of `from` (a table or a subquery, named j) with their last execution. */
const selectJobs = (from: string) => `
  SELECT j.*, e.execution_id AS e_id, e.status AS e_status, e.exit_code AS e_exit_code,
         e.started_at AS e_started_at, e.finished_at AS e_finished_at, e.duration_ms AS e_duration_ms
  FROM ${from} j
  LEFT JOIN LATERAL (
    SELECT * FROM job_executions x WHERE x.job_id = j.id ORDER BY x.execution_id DESC LIMIT 1
  ) e ON true`;
const SELECT_JOB = selectJobs('jobs');

const COLUMNS = [
  'name', 'description', 'pipeline_id', 'command', 'script', 'args', 'env', 'working_dir', 'timeout_seconds',
  'priority', 'resources', 'tags', 'labels', 'max_retries', 'retry_backoff_seconds', 'depends_on',
] as const;
const JSON_COLUMNS = new Set(['args', 'env', 'resources', 'labels']);

const dbValue = (column: string, value: unknown): unknown => (JSON_COLUMNS.has(column) ? JSON.stringify(value) : value);

// The two hottest statements are named, so each connection parses and plans them once.
const INSERT_JOB = `INSERT INTO jobs (id, ${COLUMNS.join(', ')}) VALUES ($1, ${COLUMNS.map((_, i) => `$${i + 2}`).join(', ')}) RETURNING *`;
const GET_JOB = `${SELECT_JOB} WHERE j.id = $1`;

/** Inserts a job and returns it as created (no execution yet). */
export async function insertJob(db: Db, id: string, v: JobValues): Promise<Job> {
  const values = COLUMNS.map((c) => dbValue(c, v[c]));
  const { rows } = await db.query<JobRow>({ name: 'orchestrator-insert-job', text: INSERT_JOB, values: [id, ...values] });
  return toJob(rows[0]!);
}

export async function getJob(db: Db, id: string): Promise<Job | null> {
  const { rows } = await db.query<JobRow>({ name: 'orchestrator-get-job', text: GET_JOB, values: [id] });
  return rows[0] ? toJob(rows[0]) : null;
}

/** The job's pipeline (null: none), undefined when the job does not exist. */
export async function pipelineOf(db: Db, id: string): Promise<string | null | undefined> {
  const { rows } = await db.query<{ pipeline_id: string | null }>('SELECT pipeline_id FROM jobs WHERE id = $1', [id]);
  return rows[0] ? rows[0].pipeline_id : undefined;
}

/** Locks the job row for the rest of the transaction; null when it does not exist. */
export async function lockJob(db: Db, id: string): Promise<{ id: string; pipeline_id: string | null; status: ExecutionStatus } | null> {
  const { rows } = await db.query<{ id: string; pipeline_id: string | null; status: ExecutionStatus }>(
    'SELECT id, pipeline_id, status FROM jobs WHERE id = $1 FOR UPDATE',
    [id],
  );
  return rows[0] ?? null;
}

export async function listJobs(db: Db, q: JobListQuery): Promise<{ items: Job[]; total: number }> {
  const w = new Where();
  if (q.id_prefix) w.clauses.push(idPrefixCondition('j.id', q.id_prefix, (v) => w.param(v)));
  if (q.status) w.add((p) => `j.status = ${p}`, q.status);
  if (q.pipeline_id) w.add((p) => `j.pipeline_id = ${p}`, q.pipeline_id);
  if (q.tag) w.add((p) => `${p} = ANY (j.tags)`, q.tag);
  if (q.priority !== undefined) w.add((p) => `j.priority = ${p}`, typeof q.priority === 'number' ? q.priority : PRIORITY_NAMES[q.priority]);
  if (q.name) w.add((p) => `j.name = ${p}`, q.name);
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM jobs j ${w}`, w.values);
  const limit = w.param(q.limit);
  const offset = w.param(q.offset);
  // the page first: the last execution is looked up for its jobs only, not for those an offset skips
  const page = `(SELECT * FROM jobs j ${w} ORDER BY j.created_at DESC, j.id DESC LIMIT ${limit} OFFSET ${offset})`;
  const { rows } = await db.query<JobRow>(`${selectJobs(page)} ORDER BY j.created_at DESC, j.id DESC`, w.values);
  return { items: rows.map(toJob), total: count.rows[0]?.n ?? 0 };
}

/** Jobs of one pipeline in the order they were defined. */
export async function pipelineJobs(db: Db, pipelineId: string): Promise<Array<{ id: string; name: string; depends_on: string[]; status: ExecutionStatus }>> {
  const { rows } = await db.query<{ id: string; name: string; depends_on: string[]; status: ExecutionStatus }>(
    'SELECT id, name, depends_on, status FROM jobs WHERE pipeline_id = $1 ORDER BY id',
    [pipelineId],
  );
  return rows;
}

export async function updateJob(db: Db, id: string, v: Partial<JobValues>): Promise<void> {
  const sets: string[] = [];
  const values: unknown[] = [id];
  for (const c of COLUMNS) {
    if (v[c] === undefined) continue;
    values.push(dbValue(c, v[c]));
    sets.push(`${c} = $${values.length}`);
  }
  sets.push('updated_at = now()');
  await db.query(`UPDATE jobs SET ${sets.join(', ')} WHERE id = $1`, values);
}

/** Deletes a job; the jobs of its pipeline that depended on it depend on what it depended on
 *  instead, so they still run after those (build → test → deploy without test: build → deploy). */
export async function deleteJob(db: Db, id: string, pipelineId: string | null): Promise<void> {
  const { rows } = await db.query<{ depends_on: string[] }>('DELETE FROM jobs WHERE id = $1 RETURNING depends_on', [id]);
  // only jobs of the same pipeline can depend on it
  if (pipelineId)
    await db.query(
      `UPDATE jobs SET depends_on = ARRAY(
         SELECT d FROM unnest(array_remove(depends_on, $1::uuid) || $3::uuid[]) WITH ORDINALITY AS t(d, i) GROUP BY d ORDER BY min(i))
       WHERE pipeline_id = $2 AND $1::uuid = ANY (depends_on)`,
      [id, pipelineId, rows[0]?.depends_on ?? []],
    );
}

/** Ids among `ids` that are not jobs of `pipelineId`. */
export async function idsOutsidePipeline(db: Db, pipelineId: string, ids: string[]): Promise<string[]> {
  if (!ids.length) return [];
  const { rows } = await db.query<{ id: string }>('SELECT id FROM jobs WHERE pipeline_id = $1 AND id = ANY ($2::uuid[])', [pipelineId, ids]);
  const found = new Set(rows.map((r) => r.id));
  return ids.filter((id) => !found.has(id));
}

/** Jobs whose depends_on names `id`. */
export async function dependents(db: Db, id: string, pipelineId: string | null): Promise<string[]> {
  if (!pipelineId) return [];
  const { rows } = await db.query<{ id: string }>('SELECT id FROM jobs WHERE pipeline_id = $2 AND $1::uuid = ANY (depends_on)', [id, pipelineId]);
  return rows.map((r) => r.id);
}

/** The dependency edges of a pipeline: job id → ids it depends on. */
export async function pipelineGraph(db: Db, pipelineId: string): Promise<Map<string, string[]>> {
  const { rows } = await db.query<{ id: string; depends_on: string[] }>('SELECT id, depends_on FROM jobs WHERE pipeline_id = $1', [pipelineId]);
  return new Map(rows.map((r) => [r.id, r.depends_on]));
}

/** An execution of the job (alias `jobs`) still queued or running, be it its newest or an older one. */
const HAS_ACTIVE_EXECUTION = `EXISTS (SELECT 1 FROM job_executions x WHERE x.job_id = jobs.id AND x.status IN ${ACTIVE_EXECUTION})`;
/** A running pipeline run has yet to finish the job (alias `jobs`): it waits for it, starts it, or runs it. */
const AWAITED_BY_RUN = `EXISTS (SELECT 1 FROM pipeline_run_jobs rj JOIN pipeline_runs r ON r.id = rj.run_id
  WHERE rj.job_id = jobs.id AND r.status = 'running' AND rj.status IN ${UNFINISHED_RUN_JOB})`;

/** Jobs of the pipeline with an execution still queued or running. */
export async function countActiveInPipeline(db: Db, pipelineId: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*) AS n FROM jobs WHERE pipeline_id = $1 AND ${HAS_ACTIVE_EXECUTION}`,
    [pipelineId],
  );
  return rows[0]?.n ?? 0;
}

export async function setJobStatus(db: Db, id: string, status: ExecutionStatus): Promise<void> {
  await db.query('UPDATE jobs SET status = $2, updated_at = now() WHERE id = $1 AND status IS DISTINCT FROM $2', [id, status]);
}

/** Jobs of no pipeline with a final status untouched since before `cutoff`, no execution still going
 *  and no running run waiting for them, but those of `except`, oldest first. A pipeline's jobs go
 *  only with their pipeline. */
export async function finishedJobsBefore(db: Db, cutoff: Date, limit: number, except: string[]): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM jobs WHERE pipeline_id IS NULL AND status IN ${FINAL_EXECUTION} AND updated_at < $1
       AND NOT ${HAS_ACTIVE_EXECUTION} AND NOT ${AWAITED_BY_RUN} AND id <> ALL ($3::uuid[])
     ORDER BY updated_at LIMIT $2`,
    [cutoff, limit, except],
  );
  return rows.map((r) => r.id);
}

/** Deletes those of `ids` that are still final and older than `cutoff`; returns the ids deleted. */
export async function deleteFinishedJobs(db: Db, ids: string[], cutoff: Date): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `DELETE FROM jobs WHERE id = ANY ($1::uuid[]) AND updated_at < $2 AND pipeline_id IS NULL
       AND status IN ${FINAL_EXECUTION} AND NOT ${HAS_ACTIVE_EXECUTION} AND NOT ${AWAITED_BY_RUN}
     RETURNING id`,
    [ids, cutoff],
  );
  return rows.map((r) => r.id); // jobs of no pipeline: no job depends on them
}

/** Jobs of the pipeline that have something to run (a command or a script). */
export async function runnableJobIds(db: Db, pipelineId: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    'SELECT id FROM jobs WHERE pipeline_id = $1 AND (command IS NOT NULL OR script IS NOT NULL)',
    [pipelineId],
  );
  return rows.map((r) => r.id);
}
