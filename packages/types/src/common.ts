import { z } from './zod.js';

export const Id = z.uuid().openapi({ example: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11' });
export const Timestamp = z.string().openapi({ example: '2026-11-22T04:07:01.123Z', format: 'date-time' });
/** An instant a request gives: a date-time with `Z` or an offset. */
export const Instant = z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with Z or an offset, e.g. 2027-01-01T09:00:00+01:00' });
export const IdParams = z.object({ id: Id });

/** Status of a job (from its latest execution) and of one execution. */
export const ExecutionStatus = z.enum([
  'pending', 'queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'lost',
]);
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;
export const FINAL_STATUSES: readonly ExecutionStatus[] = ['completed', 'failed', 'cancelled', 'timed_out', 'lost'];
export const isFinalStatus = (s: ExecutionStatus): boolean => FINAL_STATUSES.includes(s);
/** worker-manager retries an attempt that ended failed or lost while its spec allows another (attempt <= max_retries). */
export const retryDue = (status: ExecutionStatus, attempt: number, maxRetries: number): boolean =>
  (status === 'failed' || status === 'lost') && attempt <= maxRetries;

export const PRIORITY_NAMES = { low: 1, normal: 5, high: 10, critical: 15 } as const;
/** 1..15, higher runs first; the names low/normal/high/critical are accepted as input. */
export const Priority = z
  .union([z.number().int().min(1).max(15), z.enum(['low', 'normal', 'high', 'critical'])], {
    error: 'must be a whole number from 1 to 15, or low, normal, high or critical',
  })
  .transform((p) => (typeof p === 'number' ? p : PRIORITY_NAMES[p]))
  .openapi({ description: '1..15 (higher first) or low|normal|high|critical', example: 5 });

/** A name as people type it and lists show it: trimmed, 1..200 characters, none of them a control
 *  character (a newline or a tab in a name broke every table it was in). */
export const Name = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .regex(/^\P{Cc}*$/u, 'must not hold control characters (newline, tab, …)');

/** HODEI_API_TOKEN of the services and the worker agent: what an `Authorization` header can carry
 *  (a newline or \r read from a token file cannot; the CLI checks the same). The value is never quoted. */
export const ApiToken = z
  .string()
  .min(1)
  .regex(/^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/, 'must be printable ASCII, with no space at either end and no newline or other control character (a line ending read from a file?)');

export const Labels = z.record(z.string().min(1).max(100), z.string().max(500));
/** Linux takes at most 128 KiB (NUL included) for one argument or one `NAME=value` of the environment. */
export const MAX_ARG_BYTES = 128 * 1024 - 1;
const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** The labels reach the worker process as one environment entry, `HODEI_WORKER_LABELS=<JSON>`. */
const MAX_WORKER_LABELS_BYTES = MAX_ARG_BYTES - 'HODEI_WORKER_LABELS='.length;
/** A worker's labels (worker-manager starting one, the scheduler registering one): no more than its process can be given. */
export const WorkerLabels = Labels.superRefine((labels, ctx) => {
  const bytes = utf8Bytes(JSON.stringify(labels));
  if (bytes > MAX_WORKER_LABELS_BYTES)
    ctx.addIssue({ code: 'custom', message: `are ${bytes} bytes as JSON; a worker process takes at most ${MAX_WORKER_LABELS_BYTES}: give fewer or shorter labels` });
});

/** A string that reaches the job as one argument (with `reserve` bytes of it taken by a `NAME=`);
 *  longer ones could never start (E2BIG). */
export const argString = (instead: string, reserve = 0) =>
  z.string().superRefine((value, ctx) => {
    const max = MAX_ARG_BYTES - reserve;
    if (value.length * 3 <= max) return;
    const bytes = utf8Bytes(value);
    if (bytes > max) ctx.addIssue({ code: 'custom', message: `is ${bytes} bytes; the kernel takes at most ${max} here: ${instead}` });
  });

/** Hodei sets these for each execution: the worker the first three and TRACEPARENT (the run's span
 *  when there is a trace), the orchestrator the last two for the jobs of a pipeline run (which finds
 *  a job's start by them). */
export const RESERVED_ENV = ['HODEI_EXECUTION_ID', 'HODEI_RESULT_FILE', 'HODEI_JOB_ID', 'TRACEPARENT', 'HODEI_PIPELINE_RUN_ID', 'HODEI_PIPELINE_ID'] as const;
/** The names of a pipeline run that the orchestrator passes to worker-manager's POST /api/v1/execute. */
export const RUN_ENV: readonly string[] = ['HODEI_PIPELINE_RUN_ID', 'HODEI_PIPELINE_ID'];

const envRecord = (allowed: readonly string[]) =>
  z.record(
    z
      .string()
      .max(255, 'is longer than 255 characters')
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name: letters, digits and _, not starting with a digit')
      .refine((name) => allowed.includes(name) || !(RESERVED_ENV as readonly string[]).includes(name), {
        message: 'is set by Hodei for each execution and cannot be given',
      }),
    argString('pass more data in a file, or in the script', 257),
  );
export const Env = envRecord([]);
/** worker-manager's execute also takes a pipeline run's names, from the orchestrator. */
export const ExecuteEnv = envRecord(RUN_ENV);

export const Resources = z
  .object({
    cpu_cores: z.number().positive().max(1024).optional(),
    memory_bytes: z.number().int().positive().max(2 ** 50).optional(),
  })
  .strict(); // `{"memory": "4GiB"}` is a 400, not a job that asks for nothing
export type Resources = z.infer<typeof Resources>;

/** The least memory a worker may offer: any less could run no job. */
export const MIN_WORKER_MEMORY_BYTES = 1024 ** 2;

export const Capacity = z
  .object({
    slots: z.number().int().min(1).max(1024).default(4),
    cpu_cores: z.number().positive().max(1024).default(1),
    memory_bytes: z.number().int().min(MIN_WORKER_MEMORY_BYTES, `must be at least ${MIN_WORKER_MEMORY_BYTES} (1 MiB)`).max(2 ** 50).default(1024 ** 3),
  })
  .strict(); // `{"gpus": 1}` or `{"memory": "4GiB"}` is a 400, not a worker that offers the defaults
export type Capacity = z.infer<typeof Capacity>;

/** A whole-number query parameter: `?offset=`, `?tail=abc` or `?limit=1e3` is a 400 naming the
 *  parameter, not 0 or a guess; the OpenAPI document shows an integer. */
export const queryInt = (min: number, max: number) => {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    (v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v),
    z.number({ error: message }).int({ error: message, abort: true }).min(min, message).max(max, message),
  );
};
/** A text filter of a list: `?name=` is a 400 naming the parameter, not a filter silently left out. */
export const queryText = () => z.string().min(1, 'must not be empty: leave the parameter out to list everything');
/** `?id_prefix=`: the ids that begin with these characters (as `hodei` resolves a short id). */
export const IdPrefix = z
  .string()
  .transform((v) => v.toLowerCase())
  .pipe(z.string().regex(/^(?=(?:-*[0-9a-f]){1,32}-*$)[0-9a-f-]{1,36}$/, 'must be the start of an id: hex digits and dashes, e.g. 01a2375b-62d6'))
  .openapi({ type: 'string', example: '01a2375b-62d6', description: 'ids beginning with these characters (any case)' });
/** A `true`/`false` query parameter, false when not given (the OpenAPI document's default is 'false'). */
export const queryFlag = () => z.enum(['true', 'false']).default('false').transform((v) => v === 'true');
export const Paging = z.object({
  limit: queryInt(1, 1000).default(50),
  offset: queryInt(0, Number.MAX_SAFE_INTEGER).default(0),
});
export type Paging = z.infer<typeof Paging>;

/**
 * Checks of fields that go together, for superRefine: every field the problem is about is named in
 * `errors`, not only the first (both of two given: each of them; none given: all of them).
 */
export const fieldChoice = {
  atMostOne:
    (...fields: string[]) =>
    (v: object, ctx: z.RefinementCtx): void => {
      const given = fields.filter((f) => (v as Record<string, unknown>)[f] !== undefined);
      if (given.length < 2) return;
      const which = given.length === fields.length && fields.length === 2 ? 'both were given' : `${orList(given, 'and')} were given`;
      for (const f of given) ctx.addIssue({ code: 'custom', path: [f], message: `give only one of ${orList(fields)}: ${which}` });
    },
  atLeastOne:
    (...fields: string[]) =>
    (v: object, ctx: z.RefinementCtx): void => {
      if (fields.some((f) => (v as Record<string, unknown>)[f] !== undefined)) return;
      const none = fields.length === 2 ? 'neither was given' : 'none was given';
      for (const f of fields) ctx.addIssue({ code: 'custom', path: [f], message: `give ${orList(fields)}: ${none}` });
    },
  exactlyOne:
    (...fields: string[]) =>
    (v: object, ctx: z.RefinementCtx): void => {
      fieldChoice.atMostOne(...fields)(v, ctx);
      fieldChoice.atLeastOne(...fields)(v, ctx);
    },
};

/** 'a', 'a or b', 'a, b or c' */
const orList = (names: string[], last = 'or'): string => (names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} ${last} ${names.at(-1)}`);

export const ProblemDetails = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .openapi('Problem');
export type ProblemDetails = z.infer<typeof ProblemDetails>;

export const Health = z
  .object({
    status: z.enum(['ok', 'degraded']),
    service: z.string(),
    version: z.string(),
    uptime_seconds: z.number(),
    checks: z.record(z.string(), z.string()),
  })
  .openapi('Health');
export type Health = z.infer<typeof Health>;
