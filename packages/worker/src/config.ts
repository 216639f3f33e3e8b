// The worker agent's configuration: the only module that reads the environment. Parsed once with
// zod; everything else receives a resolved `WorkerConfig`.
import os from 'node:os';
import { checkHeartbeatTimeout, heartbeatMs, hideNatsCredentials, httpUrl, natsAddress, newId, withoutEmpty } from '@hodei/platform';
import { ApiToken, MIN_WORKER_MEMORY_BYTES, z } from '@hodei/types';

export type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const SPAWNERS = ['process', 'perl', 'thread', 'inline'] as const;
export type SpawnerKind = (typeof SPAWNERS)[number];

/** `{"pool":"gpu"}` or `pool=gpu,zone=a`. */
export function parseLabels(text: string): Record<string, string> {
  const trimmed = text.trim();
  if (trimmed === '') return {};
  if (trimmed.startsWith('{')) {
    const parsed = z.record(z.string().min(1), z.string()).safeParse(JSON.parse(trimmed));
    if (!parsed.success) throw new Error('HODEI_WORKER_LABELS: the JSON must be an object of strings');
    return parsed.data;
  }
  const labels: Record<string, string> = {};
  for (const pair of trimmed.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`HODEI_WORKER_LABELS: "${pair}" is not key=value`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}

const labelsField = z.string().transform((s, ctx) => {
  try {
    return parseLabels(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const WorkerEnvSchema = z.object({
  /** The id this agent registers under; worker-manager passes the id it gave the worker. */
  HODEI_WORKER_ID: z.uuid().optional(),
  HODEI_WORKER_NAME: z.string().min(1).max(200).optional(),
  /** Labels that assignments select workers by: JSON object or `k=v,k=v`. */
  HODEI_WORKER_LABELS: labelsField.optional(),
  /** How many executions run at once. */
  HODEI_WORKER_SLOTS: z.coerce.number().int().min(1).max(1024).default(4),
  HODEI_WORKER_CPU_CORES: z.coerce.number().positive().max(1024).optional(),
  HODEI_WORKER_MEMORY_BYTES: z.coerce.number().int().min(MIN_WORKER_MEMORY_BYTES, `must be at least ${MIN_WORKER_MEMORY_BYTES} (1 MiB)`).max(2 ** 50).optional(),
  NATS_URL: natsAddress.default('nats://127.0.0.1:4222'),
  HODEI_NATS_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/).default('hodei'),
  /** The scheduler's registry, where the agent registers at start. */
  HODEI_SCHEDULER_URL: httpUrl.default('http://127.0.0.1:8081'),
  /** Bearer token for the scheduler; never passed on to jobs. */
  HODEI_API_TOKEN: ApiToken.optional(),
  HODEI_HEARTBEAT_INTERVAL_MS: heartbeatMs.default(1000),
  /** Cut off from NATS this long (default 3 × the heartbeat interval), the scheduler counts the
   *  worker as gone and may run its jobs elsewhere: the worker kills them (status `lost`). */
  HODEI_HEARTBEAT_TIMEOUT_MS: heartbeatMs.optional(),
  /** Time between SIGTERM and SIGKILL when a job is cancelled, times out or leaves processes behind. */
  HODEI_KILL_GRACE_MS: z.coerce.number().int().min(0).default(5000),
  /** `running` is reported this long after the start, and not at all for a job over by then
   *  (it goes from queued straight to its final status, which carries started_at). */
  HODEI_WORKER_RUNNING_AFTER_MS: z.coerce.number().int().min(0).max(60_000).default(20),
  /** Directory for job scripts and result files (default: the OS temp dir). */
  HODEI_WORKER_TMPDIR: z.string().min(1).optional(),
  /** Who forks job processes: a small perl process (default; the agent's thread when perl is
   *  missing), a thread of the agent, or its main thread. */
  HODEI_WORKER_SPAWNER: z.enum(SPAWNERS).default('process'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  /** Serve Prometheus metrics on this port at /metrics when the agent runs standalone (unset: off). */
  HODEI_WORKER_METRICS_PORT: z.coerce.number().int().min(0).max(65_535).optional(),
  /** Interface of the metrics endpoint. */
  HODEI_WORKER_METRICS_HOST: z.string().min(1).default('0.0.0.0'),
}).superRefine(checkHeartbeatTimeout);

export interface WorkerConfig {
  id: string;
  name: string;
  labels: Record<string, string>;
  capacity: { slots: number; cpu_cores: number; memory_bytes: number };
  natsUrl: string;
  natsPrefix: string;
  schedulerUrl: string;
  apiToken: string | undefined;
  heartbeatIntervalMs: number;
  /** Disconnected from NATS this long → running jobs are killed and reported `lost`. */
  natsLostTimeoutMs: number;
  killGraceMs: number;
  /** Delay of the `running` report (0: at once). */
  runningAfterMs: number;
  tmpDir: string;
  /** Who forks job processes (see HODEI_WORKER_SPAWNER). */
  spawner: SpawnerKind;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Port of the standalone agent's /metrics endpoint; undefined: none. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** Register with the scheduler's registry at start (off in unit tests that have no scheduler). */
  registerWithScheduler: boolean;
  /** The environment every job starts from (the worker's own, secrets removed). */
  baseEnv: Record<string, string>;
}

/** Variables of the worker's environment that a job must never see. */
const SECRET_ENV = ['HODEI_API_TOKEN'];

export function jobBaseEnv(env: Env = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !SECRET_ENV.includes(k)) out[k] = v;
  return out;
}

export class WorkerConfigError extends Error {}

export function loadWorkerConfig(env: Env = process.env): WorkerConfig {
  const parsed = WorkerEnvSchema.safeParse(withoutEmpty(env));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new WorkerConfigError(`invalid worker configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  const id = e.HODEI_WORKER_ID ?? newId();
  return {
    id,
    name: e.HODEI_WORKER_NAME ?? `${os.hostname()}-${id.slice(-8)}`,
    labels: e.HODEI_WORKER_LABELS ?? {},
    capacity: {
      slots: e.HODEI_WORKER_SLOTS,
      cpu_cores: e.HODEI_WORKER_CPU_CORES ?? os.availableParallelism(),
      memory_bytes: e.HODEI_WORKER_MEMORY_BYTES ?? os.totalmem(),
    },
    natsUrl: e.NATS_URL,
    natsPrefix: e.HODEI_NATS_PREFIX,
    schedulerUrl: e.HODEI_SCHEDULER_URL,
    apiToken: e.HODEI_API_TOKEN,
    heartbeatIntervalMs: e.HODEI_HEARTBEAT_INTERVAL_MS,
    natsLostTimeoutMs: e.HODEI_HEARTBEAT_TIMEOUT_MS ?? 3 * e.HODEI_HEARTBEAT_INTERVAL_MS,
    killGraceMs: e.HODEI_KILL_GRACE_MS,
    runningAfterMs: e.HODEI_WORKER_RUNNING_AFTER_MS,
    tmpDir: e.HODEI_WORKER_TMPDIR ?? os.tmpdir(),
    spawner: e.HODEI_WORKER_SPAWNER,
    logLevel: e.LOG_LEVEL,
    metricsPort: e.HODEI_WORKER_METRICS_PORT,
    metricsHost: e.HODEI_WORKER_METRICS_HOST,
    registerWithScheduler: true,
    baseEnv: jobBaseEnv(env),
  };
}

/** The config as it may be logged. */
export function redactWorkerConfig(c: WorkerConfig): Record<string, unknown> {
  const { baseEnv: _env, ...rest } = c;
  return { ...rest, apiToken: c.apiToken ? '***' : undefined, natsUrl: hideNatsCredentials(c.natsUrl) };
}

export type WorkerOptions = Partial<WorkerConfig> & {
  /** Environment to read defaults from (default: the process environment). */
  env?: Env;
};

/** Options given in code win over the environment. */
export function resolveWorkerConfig(options: WorkerOptions = {}): WorkerConfig {
  const { env, ...overrides } = options;
  const base = loadWorkerConfig(env ?? process.env);
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return { ...base, ...defined };
}
