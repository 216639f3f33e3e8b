import { Capacity, fieldChoice, Id, Instant, Name, Paging, Timestamp, WorkerLabels } from './common.js';
import { z } from './zod.js';

export const OverlapPolicy = z.enum(['forbid', 'allow', 'replace']);
export const MisfirePolicy = z.enum(['run_once', 'skip']);

export const ScheduleCreate = z
  .object({
    name: Name.optional(),
    job_id: Id.optional(),
    pipeline_id: Id.optional(),
    cron: z.string().trim().min(1).max(200).optional(),
    run_at: Instant.optional(),
    timezone: z.string().trim().min(1).max(100).default('UTC').openapi({ description: 'IANA time zone, stored under its canonical name (europe/madrid: Europe/Madrid, Etc/UTC: UTC)' }),
    enabled: z.boolean().default(true),
    overlap_policy: OverlapPolicy.default('forbid'),
    misfire_policy: MisfirePolicy.default('run_once'),
  })
  .strict()
  .superRefine(fieldChoice.exactlyOne('job_id', 'pipeline_id'))
  .superRefine(fieldChoice.exactlyOne('cron', 'run_at'))
  .openapi('ScheduleCreate');
export type ScheduleCreate = z.infer<typeof ScheduleCreate>;

export const SchedulePatch = z
  .object({
    name: Name.nullable().openapi({ description: 'null removes the name' }),
    cron: z.string().trim().min(1).max(200),
    run_at: Instant,
    timezone: z.string().trim().min(1).max(100),
    enabled: z.boolean(),
    overlap_policy: OverlapPolicy,
    misfire_policy: MisfirePolicy,
  })
  .strict()
  .partial()
  .superRefine(fieldChoice.atMostOne('cron', 'run_at'))
  .openapi('SchedulePatch');
export type SchedulePatch = z.infer<typeof SchedulePatch>;

export const Schedule = z
  .object({
    id: Id,
    name: z.string().nullable(),
    job_id: Id.nullable(),
    pipeline_id: Id.nullable(),
    cron: z.string().nullable(),
    run_at: Timestamp.nullable(),
    timezone: z.string(),
    enabled: z.boolean(),
    status: z.enum(['scheduled', 'paused', 'completed']),
    overlap_policy: OverlapPolicy,
    misfire_policy: MisfirePolicy,
    next_run_at: Timestamp.nullable(),
    last_run_at: Timestamp.nullable(),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi('Schedule');
export type Schedule = z.infer<typeof Schedule>;

export const ScheduleListQuery = Paging.extend({
  job_id: Id.optional(),
  pipeline_id: Id.optional(),
  enabled: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
});

export const ScheduleRun = z
  .object({
    id: Id,
    schedule_id: Id,
    scheduled_at: Timestamp,
    fired_at: Timestamp.nullable(),
    execution_id: Id.nullable(),
    pipeline_run_id: Id.nullable().openapi({ description: 'the pipeline run a pipeline schedule started' }),
    outcome: z.enum(['pending', 'fired', 'skipped', 'failed']),
    message: z.string().nullable(),
    manual: z.boolean().openapi({ description: 'asked for with POST /api/v1/schedules/{id}/run, not fired by the schedule' }),
  })
  .openapi('ScheduleRun');
export type ScheduleRun = z.infer<typeof ScheduleRun>;

// ---- worker registry ----

export const RegistryWorkerStatus = z.enum(['online', 'draining', 'offline', 'stopped']);
export type RegistryWorkerStatus = z.infer<typeof RegistryWorkerStatus>;

export const WorkerRegister = z
  .object({
    id: Id.optional().openapi({ description: 'an agent registers under the id worker-manager gave it' }),
    type: z.enum(['shell']).default('shell'),
    name: Name.optional(),
    labels: WorkerLabels.default({}),
    capacity: Capacity.default({ slots: 4, cpu_cores: 1, memory_bytes: 1024 ** 3 }),
    host: z.string().min(1).max(255).optional(),
    pid: z.number().int().positive().max(2 ** 31 - 1).optional(),
  })
  .strict()
  .openapi('WorkerRegister');
export type WorkerRegister = z.infer<typeof WorkerRegister>;

export const FreeCapacity = z.object({ slots: z.number().int(), cpu_cores: z.number(), memory_bytes: z.number() });

export const RegistryWorker = z
  .object({
    id: Id,
    type: z.string(),
    name: z.string().nullable(),
    status: RegistryWorkerStatus,
    labels: z.record(z.string(), z.string()),
    capacity: Capacity,
    free: FreeCapacity,
    running_executions: z.array(Id),
    host: z.string().nullable(),
    pid: z.number().int().nullable(),
    registered_at: Timestamp,
    last_heartbeat_at: Timestamp.nullable(),
  })
  .openapi('RegistryWorker');
export type RegistryWorker = z.infer<typeof RegistryWorker>;

export const WorkerListQuery = Paging.extend({ status: RegistryWorkerStatus.optional() });

export const HeartbeatBody = z
  .object({
    status: z.enum(['online', 'draining']).optional(),
    running_executions: z.array(Id).max(10_000).optional(),
  })
  .strict()
  .openapi('Heartbeat');
export type HeartbeatBody = z.infer<typeof HeartbeatBody>;

export const HeartbeatAck = z
  .object({
    id: Id,
    status: RegistryWorkerStatus,
    last_heartbeat_at: Timestamp,
    /** As in `HeartbeatReply`: of the heartbeat's `running_executions`, those the worker must kill. */
    written_off: z.array(Id),
  })
  .openapi('HeartbeatAck');
export type HeartbeatAck = z.infer<typeof HeartbeatAck>;

/** The scheduler's answer to a `WorkerHeartbeat` sent as a NATS request (one sent without a reply subject gets none). */
export const HeartbeatReply = z.object({
  /** The worker in the registry. `unknown`: no entry (never registered, forgotten, or the scheduler's
   *  database was reset), so no work comes to it: the agent registers again. `stopped`: deregistered
   *  (its drain message missed): the agent drains and exits. */
  status: z.union([RegistryWorkerStatus, z.literal('unknown')]),
  /** Of the heartbeat's `running_executions`, those the scheduler recorded over (`lost` when it counted
   *  the worker gone, cancelled, ended) or placed on another worker while they still run there: the
   *  agent kills them, as they may be running again elsewhere, and reports nothing about them. */
  written_off: z.array(Id),
});
export type HeartbeatReply = z.infer<typeof HeartbeatReply>;

// ---- events ----

/** Published on `<p>.schedule.fired` (JetStream) after each firing a scheduler made. */
export const ScheduleFiredEvent = z
  .object({
    schedule_id: Id,
    run_id: Id,
    job_id: Id.nullable(),
    pipeline_id: Id.nullable(),
    scheduled_at: Timestamp,
    fired_at: Timestamp,
    execution_id: Id.nullable(),
    outcome: z.enum(['fired', 'skipped', 'failed']),
    message: z.string().nullable(),
  })
  .openapi('ScheduleFiredEvent');
export type ScheduleFiredEvent = z.infer<typeof ScheduleFiredEvent>;
