import { Capacity, ExecuteEnv, ExecutionStatus, fieldChoice, Id, IdPrefix, Instant, Labels, Name, Paging, queryFlag, queryInt, RUN_ENV, Timestamp, WorkerLabels } from './common.js';
import { JobSpec, JobSpecFields } from './job-spec.js';
import { z } from './zod.js';

// ---- worker processes ----

export const ManagedWorkerStatus = z.enum(['starting', 'running', 'draining', 'stopped', 'exited']);
export type ManagedWorkerStatus = z.infer<typeof ManagedWorkerStatus>;

export const WorkerStart = z
  .object({
    type: z.enum(['shell']).default('shell'),
    name: Name.optional(),
    labels: WorkerLabels.default({}),
    capacity: Capacity.default({ slots: 4, cpu_cores: 1, memory_bytes: 1024 ** 3 }),
  })
  .strict()
  .openapi('WorkerStart');
export type WorkerStart = z.infer<typeof WorkerStart>;

export const ManagedWorker = z
  .object({
    id: Id,
    type: z.string(),
    name: z.string().nullable(),
    status: ManagedWorkerStatus,
    pid: z.number().int().nullable(),
    host: z.string().nullable(),
    labels: z.record(z.string(), z.string()),
    capacity: Capacity,
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    started_at: Timestamp,
    stopped_at: Timestamp.nullable(),
  })
  .openapi('ManagedWorker');
export type ManagedWorker = z.infer<typeof ManagedWorker>;

export const ManagedWorkerListQuery = Paging.extend({ status: ManagedWorkerStatus.optional() });
export const WorkerStopQuery = z.object({ force: queryFlag() });

export const WorkerStatusView = z
  .object({
    id: Id,
    status: ManagedWorkerStatus,
    pid: z.number().int().nullable(),
    running_executions: z.array(Id),
    last_heartbeat_at: Timestamp.nullable(),
    uptime_seconds: z.number(),
  })
  .openapi('WorkerStatus');

// ---- executions ----

/**
 * A pipeline run's names come only as the orchestrator sends them when it starts a run's job: with
 * job_id and env alone, both names, UUIDs (worker-manager checks the job is of that pipeline). Any
 * holder of the API token can still send that, but not tag a command of its own, or a job of
 * another pipeline, as a run's start (the orchestrator adopts such an execution after a restart).
 */
function runEnvIssues(v: { job_id?: string; env?: Record<string, string> }, ctx: z.RefinementCtx): void {
  const given = RUN_ENV.filter((name) => v.env?.[name] !== undefined);
  if (!given.length) return;
  const others = Object.keys(v).filter((k) => k !== 'job_id' && k !== 'env');
  const missing = RUN_ENV.filter((name) => !given.includes(name));
  const why =
    v.job_id === undefined ? 'comes only with job_id'
    : others.length ? `comes only with job_id and env, not ${others.join(', ')}`
    : missing.length ? `comes only with ${missing.join(', ')}`
    : undefined;
  const message = (m: string) => `is set by the orchestrator for a pipeline run's job: ${m}`;
  if (why) return void ctx.addIssue({ code: 'custom', path: ['env', given[0]!], message: message(why) });
  for (const name of given) {
    if (!Id.safeParse(v.env![name]).success) ctx.addIssue({ code: 'custom', path: ['env', name], message: message('must be a UUID') });
  }
}

export const ExecuteRequest = z
  .object({
    job_id: Id.optional(),
    name: Name.optional(),
    ...JobSpecFields,
    env: ExecuteEnv.optional(),
  })
  .strict()
  .superRefine(fieldChoice.atMostOne('command', 'script'))
  .superRefine(fieldChoice.atLeastOne('job_id', 'command', 'script'))
  .superRefine(runEnvIssues)
  .openapi('ExecuteRequest');
export type ExecuteRequest = z.infer<typeof ExecuteRequest>;

export const Progress = z
  .object({
    current: z.number().nullable(),
    total: z.number().nullable(),
    percent: z.number().nullable(),
    message: z.string().nullable(),
    updated_at: Timestamp,
  })
  .openapi('Progress');
export type Progress = z.infer<typeof Progress>;

export const Execution = z
  .object({
    id: Id,
    job_id: Id.nullable(),
    name: z.string(),
    worker_id: Id.nullable(),
    attempt: z.number().int(),
    retry_of: Id.nullable(),
    status: ExecutionStatus,
    priority: z.number().int(),
    exit_code: z.number().int().nullable(),
    signal: z.string().nullable(),
    message: z.string().nullable(),
    waiting: z.string().nullable().openapi({ description: 'why a queued execution is not placed yet' }),
    progress: Progress.nullable(),
    spec: JobSpec,
    created_at: Timestamp,
    started_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
    duration_ms: z.number().int().nullable(),
    log_lines: z.number().int(),
  })
  .openapi('Execution');
export type Execution = z.infer<typeof Execution>;

export const ExecutionListQuery = Paging.extend({
  id_prefix: IdPrefix.optional(),
  job_id: Id.optional(),
  status: ExecutionStatus.optional(),
  worker_id: Id.optional(),
  retry_of: Id.optional().openapi({ description: 'the attempt that retries this execution' }),
});

// ---- logs ----

export const LogStream = z.enum(['stdout', 'stderr']);
export type LogStream = z.infer<typeof LogStream>;

/** Set (true) on a stream's last line when the job ended it without a newline; absent otherwise. */
export const NoNewline = z.literal(true).optional().openapi({
  description: 'true on the last line of a stream that the job did not end with a newline (`printf hi`): the bytes were `line` alone, not `line` + \\n',
});

export const LogLine = z
  .object({ seq: z.number().int().min(1), stream: LogStream, line: z.string(), timestamp: Timestamp, no_newline: NoNewline })
  .openapi('LogLine');
export type LogLine = z.infer<typeof LogLine>;

/** A log line's seq is a 32-bit integer in the store. */
export const MAX_SEQ = 2_147_483_647;

export const LogsQuery = z.object({
  since_seq: queryInt(0, MAX_SEQ).optional(),
  tail: queryInt(0, 100_000).optional(),
  stream: LogStream.optional(),
  grep: z.string().max(1000).optional(),
  limit: queryInt(1, 100_000).default(10_000),
});
export type LogsQuery = z.infer<typeof LogsQuery>;

export const LogsResponse = z
  .object({ execution_id: Id, lines: z.array(LogLine), next_seq: z.number().int() })
  .openapi('Logs');
export type LogsResponse = z.infer<typeof LogsResponse>;

/** Query of `GET /api/v1/executions/:id/logs`; `grep_regex=true` makes `grep` a POSIX regex (PostgreSQL `~`). */
export const LogsQueryFull = LogsQuery.extend({
  grep_regex: queryFlag(),
});
export type LogsQueryFull = z.infer<typeof LogsQueryFull>;

/** Query of the log SSE stream: history from `since_seq` (exclusive, like `Last-Event-ID`), the last `tail` of those lines, as on GET …/logs. */
export const LogStreamQuery = LogsQuery.pick({ since_seq: true, tail: true });

// ---- storage and cleanup (used by the orchestrator's stats and cleanup) ----

const StorageFigures = z.object({ rows: z.number().int(), bytes: z.number().int() });
export const WorkerManagerStorage = z
  .object({ executions: StorageFigures, logs: StorageFigures })
  .openapi('WorkerManagerStorage');
export type WorkerManagerStorage = z.infer<typeof WorkerManagerStorage>;

export const ExecutionsCleanupRequest = z
  .object({
    job_ids: z.array(Id).max(100_000),
    /** also every execution over before then, of no job or of a job that has run since */
    finished_before: Instant.optional().openapi({ example: '2026-11-22T04:07:01.123Z' }),
    dry_run: z.boolean().default(false).openapi({ description: 'count what would be deleted, delete nothing' }),
  })
  .strict()
  .openapi('ExecutionsCleanupRequest');
/** How many executions went (or would go), and of them how many are older executions of jobs that
 *  stay and how many of no job. */
export const ExecutionCleanupCounts = z.object({
  executions: z.number().int(),
  older_executions: z.number().int().openapi({ description: 'of executions, the older ones of jobs that stay (each keeps its newest)' }),
  adhoc_executions: z.number().int().openapi({ description: 'of executions, those of no job (POST /execute with a command)' }),
});
export type ExecutionCleanupCounts = z.infer<typeof ExecutionCleanupCounts>;
export const ExecutionsCleanupResult = ExecutionCleanupCounts.openapi('ExecutionsCleanupResult');

/** `data` of a `job_event` SSE event. */
export const ExecutionEventData = z
  .object({
    type: z.literal('status_changed'),
    execution_id: Id,
    job_id: Id.nullable(),
    status: ExecutionStatus,
    message: z.string().nullable(),
    timestamp: Timestamp,
  })
  .openapi('ExecutionEvent');
export type ExecutionEventData = z.infer<typeof ExecutionEventData>;
