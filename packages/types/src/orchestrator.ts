import { Env, ExecutionStatus, fieldChoice, Id, IdPrefix, Name, Paging, Priority, queryInt, queryText, Timestamp } from './common.js';
import { JobSpecFields } from './job-spec.js';
import { ExecutionCleanupCounts } from './worker-manager.js';
import { z } from './zod.js';

const Tags = z.array(z.string().min(1).max(100)).max(100);

// ---- jobs ----

const JobFields = {
  name: Name.optional(),
  description: z.string().max(10_000).nullable().optional(),
  pipeline_id: Id.nullable().optional(),
  tags: Tags.optional(),
  depends_on: z.array(Id).max(1000).optional(),
  ...JobSpecFields,
};

export const JobCreate = z.object(JobFields).strict().superRefine(fieldChoice.atMostOne('command', 'script')).openapi('JobCreate');
export type JobCreate = z.infer<typeof JobCreate>;
/** A PATCH may also clear the optional settings that have no default: `null` removes them. */
export const JobPatch = z
  .object({
    ...JobFields,
    timeout_seconds: JobSpecFields.timeout_seconds.unwrap().nullable().optional(),
    working_dir: JobSpecFields.working_dir.unwrap().nullable().optional(),
  })
  .strict()
  .superRefine(fieldChoice.atMostOne('command', 'script'))
  .openapi('JobPatch');
export type JobPatch = z.infer<typeof JobPatch>;

export const ExecutionSummary = z
  .object({
    id: Id,
    status: ExecutionStatus,
    exit_code: z.number().int().nullable(),
    started_at: Timestamp.nullable(),
    finished_at: Timestamp.nullable(),
    duration_ms: z.number().int().nullable(),
  })
  .openapi('ExecutionSummary');
export type ExecutionSummary = z.infer<typeof ExecutionSummary>;

export const Job = z
  .object({
    id: Id,
    name: z.string(),
    description: z.string().nullable(),
    pipeline_id: Id.nullable(),
    status: ExecutionStatus,
    command: z.string().nullable(),
    script: z.string().nullable(),
    args: z.array(z.string()),
    env: z.record(z.string(), z.string()),
    working_dir: z.string().nullable(),
    timeout_seconds: z.number().int().nullable(),
    priority: z.number().int(),
    resources: z.object({ cpu_cores: z.number().optional(), memory_bytes: z.number().optional() }),
    tags: z.array(z.string()),
    labels: z.record(z.string(), z.string()),
    max_retries: z.number().int(),
    retry_backoff_seconds: z.number().int(),
    depends_on: z.array(Id),
    last_execution: ExecutionSummary.nullable(),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi('Job');
export type Job = z.infer<typeof Job>;

/** The answer to a job cancel: the job, and how many executions the cancel stopped. */
export const JobCancelled = Job.extend({
  cancelled: z.object({
    executions: z.number().int(),
    queued: z.number().int(),
    running: z.number().int(),
  }),
}).openapi('JobCancelled');
export type JobCancelled = z.infer<typeof JobCancelled>;

export const JobListQuery = Paging.extend({
  id_prefix: IdPrefix.optional(),
  status: ExecutionStatus.optional(),
  pipeline_id: Id.optional(),
  tag: queryText().optional(),
  priority: z
    .union([queryInt(1, 15), z.enum(['low', 'normal', 'high', 'critical'])], { error: 'must be a whole number from 1 to 15, or low, normal, high or critical' })
    .optional(),
  name: queryText().optional(),
});
export type JobListQuery = z.infer<typeof JobListQuery>;

// ---- pipelines ----

/** A job written inside a pipeline file: `depends_on` names other jobs of the same file. */
const { pipeline_id: _inlineJobsTakeTheirPipeline, ...InlineJobFields } = JobFields;
export const InlineJob = z
  .object({ ...InlineJobFields, name: Name, depends_on: z.array(Name).max(1000).optional() })
  .strict()
  .superRefine(fieldChoice.atMostOne('command', 'script'))
  .openapi('InlineJob');
export type InlineJob = z.infer<typeof InlineJob>;

export const PipelineStatus = z.enum(['active', 'archived']);

export const PipelineCreate = z
  .object({
    name: Name,
    description: z.string().max(10_000).nullable().optional(),
    jobs: z.array(InlineJob).max(1000).optional(),
  })
  .strict()
  .openapi('PipelineCreate');
export type PipelineCreate = z.infer<typeof PipelineCreate>;

export const PipelinePatch = z
  .object({ name: Name, description: z.string().max(10_000).nullable(), status: PipelineStatus })
  .strict()
  .partial()
  .openapi('PipelinePatch');
export type PipelinePatch = z.infer<typeof PipelinePatch>;

export const PipelineJobRef = z.object({
  id: Id,
  name: z.string(),
  depends_on: z.array(Id),
  status: ExecutionStatus,
});

export const Pipeline = z
  .object({
    id: Id,
    name: z.string(),
    description: z.string().nullable(),
    status: PipelineStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    jobs: z.array(PipelineJobRef).optional(),
  })
  .openapi('Pipeline');
export type Pipeline = z.infer<typeof Pipeline>;

export const PipelineListQuery = Paging.extend({ status: PipelineStatus.optional(), name: queryText().optional() });

// ---- stats and cleanup ----

export const Stats = z
  .object({
    total_jobs: z.number().int(),
    by_status: z.record(z.string(), z.number().int()),
    by_priority: z.record(z.string(), z.number().int()),
    success_rate: z.number().nullable(),
    avg_duration_ms: z.number().nullable(),
    storage: z.record(z.string(), z.object({ rows: z.number().int(), bytes: z.number().int() })),
  })
  .openapi('Stats');
export type Stats = z.infer<typeof Stats>;

export const CleanupRequest = z
  .object({ older_than_days: z.number().min(0).max(36_500), dry_run: z.boolean().default(false) })
  .strict()
  .openapi('CleanupRequest');
export const CleanupResult = ExecutionCleanupCounts.extend({
  dry_run: z.boolean(),
  jobs: z.number().int(),
  job_ids: z.array(Id),
  pipeline_runs: z.number().int().openapi({ description: 'pipeline runs over for older_than_days' }),
}).openapi('CleanupResult');
export type CleanupResult = z.infer<typeof CleanupResult>;

// ---- pipeline runs ----

/** Status of one job inside a pipeline run: an execution status, or why it has none yet. */
export const PipelineRunJobStatus = z.enum([
  'waiting', 'starting', 'queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'lost', 'skipped',
]);
export type PipelineRunJobStatus = z.infer<typeof PipelineRunJobStatus>;
export const PipelineRunStatus = z.enum(['running', 'completed', 'failed', 'cancelled']);
export type PipelineRunStatus = z.infer<typeof PipelineRunStatus>;

export const PipelineRunJob = z.object({
  job_id: Id,
  name: z.string(),
  depends_on: z.array(Id),
  status: PipelineRunJobStatus,
  execution_id: Id.nullable(),
  message: z.string().nullable(),
  /** From the job's execution in this run; null until known. */
  exit_code: z.number().int().nullable().optional(),
  started_at: Timestamp.nullable().optional(),
  finished_at: Timestamp.nullable().optional(),
  duration_ms: z.number().int().nullable().optional(),
});
export type PipelineRunJob = z.infer<typeof PipelineRunJob>;

export const PipelineRun = z
  .object({
    id: Id,
    pipeline_id: Id,
    status: PipelineRunStatus,
    jobs: z.array(PipelineRunJob),
    /** Environment every job of the run receives (over the job's own `env`). */
    env: z.record(z.string(), z.string()).optional(),
    created_at: Timestamp,
    updated_at: Timestamp,
    finished_at: Timestamp.nullable(),
  })
  .openapi('PipelineRun');
export type PipelineRun = z.infer<typeof PipelineRun>;

/** Body of `POST /api/v1/pipelines/:id/runs` (optional). */
export const PipelineRunRequest = z
  .object({ env: Env.optional().openapi({ description: 'passed to every job of the run, over the job\'s own env' }) })
  .strict()
  .openapi('PipelineRunRequest');
export type PipelineRunRequest = z.infer<typeof PipelineRunRequest>;

/**
 * A change in a pipeline run, published on `<p>.job.run.<run_id>` and sent on the orchestrator's
 * run event streams: `job` when one job's status (or execution) changed, `run` when the run's did.
 */
export const PipelineRunEvent = z
  .object({
    type: z.enum(['job', 'run']),
    run_id: Id,
    pipeline_id: Id,
    status: z.string(),
    job_id: Id.optional(),
    name: z.string().optional(),
    execution_id: Id.nullable().optional(),
    exit_code: z.number().int().nullable().optional(),
    message: z.string().nullable().optional(),
    timestamp: Timestamp,
  })
  .openapi('PipelineRunEvent');
export type PipelineRunEvent = z.infer<typeof PipelineRunEvent>;

export const PipelineRunListQuery = Paging.extend({ status: PipelineRunStatus.optional() });

export { Priority };
