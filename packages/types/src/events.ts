// NATS subjects and the payloads that travel on them. Every subject starts with a prefix
// (`hodei` by default) so that tests and side-by-side installations never see each other's traffic.
import { ExecutionStatus, Id, Timestamp } from './common.js';
import { JobSpec } from './job-spec.js';
import { LogStream, NoNewline, Progress } from './worker-manager.js';
import { z } from './zod.js';

/** Appended to an execution's queued / status subject when it belongs to no job. */
const ADHOC = '.adhoc';

export function subjects(prefix = 'hodei') {
  const p = prefix;
  const queued = `${p}.execution.queued`;
  const status = (executionId: string) => `${p}.execution.${executionId}.status`;
  return {
    prefix: p,
    /** JetStream stream of durable events (`<p>.execution.>`, `<p>.job.>`, `<p>.schedule.>`, `<p>.worker.>`). */
    eventsStream: `${p.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_EVENTS`,
    /** JetStream stream of log messages (`<p>.logs.<worker_id>`, or `<p>.logs.<execution_id>` for a single batch). */
    logsStream: `${p.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_LOGS`,
    eventsSubjects: [`${p}.execution.>`, `${p}.job.>`, `${p}.schedule.>`, `${p}.worker.>`],
    logsSubjects: [`${p}.logs.>`],

    executionQueued: queued,
    executionStatus: status,
    executionStatusAll: status('*'),
    /** A job's execution as worker-manager recorded its end (for the orchestrator); an execution
     *  without a job has none: nobody follows it but the scheduler, which takes the worker's status. */
    executionFinished: `${p}.execution.finished`,
    /** The queued and status events of an execution without a job (`POST /execute` of a command):
     *  the subjects above with `.adhoc` appended. The orchestrator, which follows jobs, never sees them. */
    executionQueuedAdhoc: queued + ADHOC,
    executionStatusAdhocAll: status('*') + ADHOC,
    /** Where the events of an execution go, by whether it belongs to a job. */
    forExecution: (jobId: string | null) => {
      const t = jobId === null ? ADHOC : '';
      return { queued: queued + t, status: (executionId: string) => status(executionId) + t };
    },
    executionCancel: `${p}.execution.cancel`,
    /** Part `n` (from 0) of a result too large to travel inside its final status. */
    executionResultPart: (executionId: string, n: number) => `${p}.execution.${executionId}.result.${n}`,
    executionResultParts: (executionId: string) => `${p}.execution.${executionId}.result.*`,
    /** A worker's log messages (`<p>.logs.<worker_id>`); a bare `LogBatch` may use the execution id. */
    logs: (id: string) => `${p}.logs.${id}`,
    logsAll: `${p}.logs.*`,
    jobEvent: (kind: string) => `${p}.job.${kind}`,
    /** Pipeline run changes (`PipelineRunEvent`), one subject per run. */
    pipelineRun: (runId: string) => `${p}.job.run.${runId}`,
    pipelineRunAll: `${p}.job.run.*`,
    scheduleFired: `${p}.schedule.fired`,
    workerEvent: (workerId: string, kind: string) => `${p}.worker.${workerId}.${kind}`,

    // Core NATS (request/reply, not stored in a stream).
    assign: (workerId: string) => `${p}_rpc.assign.${workerId}`,
    control: (workerId: string) => `${p}_rpc.control.${workerId}`,
    /** A cancel for whichever worker runs the execution (`WorkerControl{cancel}`): sent to every
     *  worker; only the one running it answers. */
    cancelAnywhere: `${p}_rpc.cancel`,
    heartbeat: (workerId: string) => `${p}_rpc.heartbeat.${workerId}`,
    heartbeatAll: `${p}_rpc.heartbeat.*`,
    /** worker-manager's `LogBacklog`: workers stop reading their jobs' output while it is behind. */
    logsBacklog: `${p}_rpc.logs.backlog`,
    /** Between worker-manager replicas: a status change one of them applied, for the live streams of the others. */
    liveEvents: `${p}_rpc.wm.live`,
    /** To the worker-manager replica that started a worker (only it can signal the process): stop it. */
    workerStop: (workerId: string) => `${p}_rpc.wm.stop.${workerId}`,
  };
}
export type Subjects = ReturnType<typeof subjects>;

export const ExecutionCancelEvent = z.object({ execution_id: Id });

export const ExecutionQueuedEvent = z.object({
  execution_id: Id,
  job_id: Id.nullable(),
  priority: z.number().int(),
  spec: JobSpec,
  attempt: z.number().int(),
  created_at: Timestamp,
  traceparent: z.string().optional(),
  /** A retry: workers the earlier attempts ran on; the placer prefers any other worker that fits. */
  avoid_workers: z.array(Id).optional(),
  /** A retry: the execution it repeats. */
  retry_of: Id.optional(),
});
export type ExecutionQueuedEvent = z.infer<typeof ExecutionQueuedEvent>;

/** Sent by the scheduler to one worker (request/reply); the worker answers with an `AssignmentAck`. */
export const Assignment = z.object({
  execution_id: Id,
  job_id: Id.nullable(),
  attempt: z.number().int(),
  spec: JobSpec,
  traceparent: z.string().optional(),
});
export type Assignment = z.infer<typeof Assignment>;
export const AssignmentAck = z.object({ accepted: z.boolean(), reason: z.string().optional() });
export type AssignmentAck = z.infer<typeof AssignmentAck>;

export const WorkerControl = z.discriminatedUnion('action', [
  z.object({ action: z.literal('cancel'), execution_id: Id, reason: z.enum(['cancelled', 'timed_out']).default('cancelled') }),
  z.object({ action: z.literal('drain') }),
  z.object({ action: z.literal('stop'), force: z.boolean() }),
  /** Who holds this worker id: asked by an agent starting with that id (two would each run every job placed on it). */
  z.object({ action: z.literal('identify') }),
]);
export type WorkerControl = z.infer<typeof WorkerControl>;

/** An agent's answer to `WorkerControl{identify}`. */
export const WorkerIdentity = z.object({ ok: z.literal(true), pid: z.number().int(), host: z.string(), draining: z.boolean() });
export type WorkerIdentity = z.infer<typeof WorkerIdentity>;

export const LogBatch = z.object({
  execution_id: Id,
  lines: z.array(z.object({ seq: z.number().int(), stream: LogStream, line: z.string(), timestamp: Timestamp, no_newline: NoNewline })),
});
export type LogBatch = z.infer<typeof LogBatch>;

/** What a worker publishes on `<p>.logs.<worker_id>`: the lines of one or more of its executions
 *  read at one moment, each batch in seq order. (A bare `LogBatch` on `<p>.logs.<execution_id>`
 *  is accepted too.) */
export const LogMessage = z.object({ worker_id: Id, batches: z.array(LogBatch) });
export type LogMessage = z.infer<typeof LogMessage>;

/**
 * worker-manager stores log lines more slowly than they arrive: `behind` is sent when that starts,
 * again every second while it lasts, and `behind: false` once it caught up. `pending` is the log
 * messages not stored yet (waiting in the stream, or delivered to it and not inserted).
 */
export const LogBacklog = z.object({ behind: z.boolean(), pending: z.number().int().min(0) });
export type LogBacklog = z.infer<typeof LogBacklog>;

export const ExecutionStatusEvent = z.object({
  execution_id: Id,
  job_id: Id.nullable(),
  worker_id: Id.nullable(),
  status: ExecutionStatus,
  exit_code: z.number().int().nullable().optional(),
  signal: z.string().nullable().optional(),
  message: z.string().nullable().optional(),
  progress: Progress.nullable().optional(),
  last_seq: z.number().int().optional(),
  started_at: Timestamp.nullable().optional(),
  finished_at: Timestamp.nullable().optional(),
  duration_ms: z.number().int().nullable().optional(),
  /** On worker-manager's event announcing a retry: the execution it repeats. */
  retry_of: Id.optional(),
  /** On worker-manager's final event of an execution that is retried: the attempt that repeats it. */
  retried_as: Id.optional(),
  /** Final event only: the JSON the job wrote to $HODEI_RESULT_FILE, or why it could not be read. */
  result: z.unknown().optional(),
  result_error: z.string().optional(),
  /** Final event only, instead of `result`: the result's JSON did not fit in this message and went
   *  ahead of it in this many parts, on `<p>.execution.<id>.result.<n>` (n from 0). */
  result_parts: z.number().int().positive().optional(),
  timestamp: Timestamp,
});
export type ExecutionStatusEvent = z.infer<typeof ExecutionStatusEvent>;

export const WorkerHeartbeat = z.object({
  worker_id: Id,
  status: z.enum(['online', 'draining']),
  running_executions: z.array(Id),
  timestamp: Timestamp,
});
export type WorkerHeartbeat = z.infer<typeof WorkerHeartbeat>;
