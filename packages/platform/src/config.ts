// The one place that reads the environment: parsed once at start-up, defaults applied, secrets
// kept out of what gets logged.
import { ApiToken, z } from '@hodei/types';
import { ACK_WAIT_MS, LOG_STREAM_MAX_BYTES, NATS_CREDENTIALS } from './nats.js';

export const SERVICES = ['orchestrator', 'scheduler', 'worker-manager'] as const;
export type ServiceName = (typeof SERVICES)[number];

const DEFAULT_PORTS: Record<ServiceName, number> = { orchestrator: 8080, scheduler: 8081, 'worker-manager': 8082 };

const port = z.coerce.number().int().min(0).max(65_535);
const ms = z.coerce.number().int().min(1);

/** The shortest heartbeat interval and time-out accepted, by the services and the worker agent alike
 *  (worker-manager passes its own values on to the agents it starts). */
export const MIN_HEARTBEAT_MS = 10;
export const heartbeatMs = z.coerce.number().int().min(MIN_HEARTBEAT_MS, `must be at least ${MIN_HEARTBEAT_MS} (ms)`);

/** Where a service is reached: z.url() alone takes ftp://, mailto: and the like, which fetch never reaches. */
export const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' });

/** How often a silence of `timeoutMs` is looked for (the scheduler's for a worker's heartbeats, a
 *  worker's for the NATS server's answers): a tenth of it, from 50 to 200 ms. */
export const silenceCheckMs = (timeoutMs: number): number => Math.max(50, Math.min(200, Math.floor(timeoutMs / 10)));

/** What the NATS client takes: `host:port` or a nats://, tls://, ws:// or wss:// URL, comma-separated. */
function isNatsAddress(value: string): boolean {
  return value.split(',').every((entry) => {
    const text = entry.trim();
    try {
      const url = new URL(text.includes('://') ? text : `nats://${text}`);
      return ['nats:', 'tls:', 'ws:', 'wss:'].includes(url.protocol) && url.hostname !== '';
    } catch {
      return false;
    }
  });
}

/** NATS_URL, for the services and the worker agent alike. */
export const natsAddress = z.string().refine(isNatsAddress, 'must be a NATS server address such as nats://127.0.0.1:4222 (several: comma-separated)');

/** A time-out no longer than the interval would count every worker gone between two beats. */
export function checkHeartbeatTimeout(
  e: { HODEI_HEARTBEAT_INTERVAL_MS: number; HODEI_HEARTBEAT_TIMEOUT_MS?: number | undefined },
  ctx: z.RefinementCtx,
): void {
  if (e.HODEI_HEARTBEAT_TIMEOUT_MS !== undefined && e.HODEI_HEARTBEAT_TIMEOUT_MS <= e.HODEI_HEARTBEAT_INTERVAL_MS) {
    ctx.addIssue({
      code: 'custom',
      path: ['HODEI_HEARTBEAT_TIMEOUT_MS'],
      message: `must be greater than HODEI_HEARTBEAT_INTERVAL_MS (${e.HODEI_HEARTBEAT_INTERVAL_MS})`,
    });
  }
}

const EnvSchema = z.object({
  /** Postgres; each service keeps its tables in its own schema of this database. */
  DATABASE_URL: z.string().default('postgres://postgres@127.0.0.1:5432/hodei'),
  NATS_URL: natsAddress.default('nats://127.0.0.1:4222'),
  /** Prefix of every NATS subject and stream name: lets installations (and tests) share one NATS. */
  HODEI_NATS_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/).default('hodei'),
  /** When set, every /api/v1 route needs `Authorization: Bearer <token>`. */
  HODEI_API_TOKEN: ApiToken.optional(),
  /** Interface to listen on; without a token the services only ever bind to 127.0.0.1. */
  HODEI_HOST: z.string().default('0.0.0.0'),
  HODEI_ORCHESTRATOR_PORT: port.default(DEFAULT_PORTS.orchestrator),
  HODEI_SCHEDULER_PORT: port.default(DEFAULT_PORTS.scheduler),
  HODEI_WORKER_MANAGER_PORT: port.default(DEFAULT_PORTS['worker-manager']),
  HODEI_ORCHESTRATOR_URL: httpUrl.optional(),
  HODEI_SCHEDULER_URL: httpUrl.optional(),
  HODEI_WORKER_MANAGER_URL: httpUrl.optional(),
  /** Comma-separated browser origins allowed by CORS; default any localhost / 127.0.0.1 origin. */
  HODEI_CORS_ORIGINS: z.string().optional(),
  /** What body-parser reads as that size (it takes ' 2 gb' for 2 bytes, '1.5' for 1, '-1mb' below zero).
   *  The default takes a script of the largest size allowed (1 Mi characters) even when each is 3 bytes
   *  of UTF-8 or 2 of JSON escape, with the rest of the job. */
  HODEI_BODY_LIMIT: z
    .string()
    .regex(/^(\d+b?|\d+(\.\d+)? *(kb|mb|gb|tb|pb))$/i, 'must be a size such as 1048576, 512kb or 10mb')
    .default('4mb'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HODEI_HEARTBEAT_INTERVAL_MS: heartbeatMs.default(1000),
  HODEI_HEARTBEAT_TIMEOUT_MS: heartbeatMs.optional(),
  /** Time between SIGTERM and SIGKILL when a job is cancelled or times out. */
  HODEI_KILL_GRACE_MS: z.coerce.number().int().min(0).default(5000),
  HODEI_SHUTDOWN_TIMEOUT_MS: ms.default(10_000),
  /** worker-manager purges log lines it has stored from the logs stream once it holds more than this. */
  HODEI_LOG_STREAM_KEEP_BYTES: z.coerce.number().int().min(0).default(256 * 1024 * 1024),
  /** The logs stream's size limit: full, it refuses the workers' lines (their jobs pause) until worker-manager stores some. */
  HODEI_LOG_STREAM_MAX_BYTES: z.coerce.number().int().min(1).default(LOG_STREAM_MAX_BYTES),
  /** worker-manager: the database time one logs request's regular-expression search (grep_regex) may take. */
  HODEI_LOG_GREP_TIMEOUT_MS: ms.default(10_000),
  /** The scheduler forgets a stopped worker, or an offline one whose process exited, not heard of for this long;
   *  worker-manager, a worker it started that stopped or exited this long ago. */
  HODEI_FORGET_WORKERS_AFTER_MS: ms.default(24 * 3600_000),
  /** orchestrator: how long a pipeline run's job waits for worker-manager to take its start (it is
   *  restarting, or answers 503 while its NATS is away) before it fails; 0 fails it at once. */
  HODEI_PIPELINE_START_WAIT_MS: z.coerce.number().int().min(0).default(5 * 60_000),
})
  .superRefine(checkHeartbeatTimeout)
  .superRefine((e, ctx) => {
    // at or under what is kept, nothing stored is ever purged, and a full stream stays full
    if (e.HODEI_LOG_STREAM_MAX_BYTES <= e.HODEI_LOG_STREAM_KEEP_BYTES) {
      ctx.addIssue({ code: 'custom', path: ['HODEI_LOG_STREAM_MAX_BYTES'], message: `must be greater than HODEI_LOG_STREAM_KEEP_BYTES (${e.HODEI_LOG_STREAM_KEEP_BYTES})` });
    }
  });

export type Env = Record<string, string | undefined>;

export interface Config {
  service: ServiceName;
  version: string;
  host: string;
  port: number;
  databaseUrl: string;
  natsUrl: string;
  natsPrefix: string;
  apiToken: string | undefined;
  corsOrigins: string[] | undefined;
  bodyLimit: string;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  urls: Record<ServiceName, string>;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  killGraceMs: number;
  shutdownTimeoutMs: number;
  logStreamKeepBytes: number;
  logStreamMaxBytes: number;
  logGrepTimeoutMs: number;
  forgetWorkersAfterMs: number;
  pipelineStartWaitMs: number;
  /** The ack wait of worker-manager's and the scheduler's durable consumers: always ACK_WAIT_MS, shorter only in tests. */
  ackWaitMs: number;
  /** How long a log stream waits for an ended execution's last lines (worker-manager's FINAL_GRACE_MS when unset); set only in tests. */
  logFinalGraceMs?: number;
  /** How long after it is recorded worker-manager announces a still-queued execution again (its ANNOUNCE_GRACE_MS when unset); set only in tests. */
  announceGraceMs?: number;
}

export class ConfigError extends Error {}

/** The environment without its empty variables: `NAME=` (as a .env file gives) means unset, as in the CLI. */
export function withoutEmpty(env: Env): Env {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
}

export function loadConfig(service: ServiceName, env: Env = process.env): Config {
  const parsed = EnvSchema.safeParse(withoutEmpty(env));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  const ports: Record<ServiceName, number> = {
    orchestrator: e.HODEI_ORCHESTRATOR_PORT,
    scheduler: e.HODEI_SCHEDULER_PORT,
    'worker-manager': e.HODEI_WORKER_MANAGER_PORT,
  };
  const local = (s: ServiceName) => `http://127.0.0.1:${ports[s]}`;
  return {
    service,
    version: '0.1.0',
    host: e.HODEI_API_TOKEN ? e.HODEI_HOST : '127.0.0.1',
    port: ports[service],
    databaseUrl: e.DATABASE_URL,
    natsUrl: e.NATS_URL,
    natsPrefix: e.HODEI_NATS_PREFIX,
    apiToken: e.HODEI_API_TOKEN,
    corsOrigins: e.HODEI_CORS_ORIGINS?.split(',').map((s) => s.trim()).filter(Boolean),
    bodyLimit: e.HODEI_BODY_LIMIT,
    logLevel: e.LOG_LEVEL,
    urls: {
      orchestrator: e.HODEI_ORCHESTRATOR_URL ?? local('orchestrator'),
      scheduler: e.HODEI_SCHEDULER_URL ?? local('scheduler'),
      'worker-manager': e.HODEI_WORKER_MANAGER_URL ?? local('worker-manager'),
    },
    heartbeatIntervalMs: e.HODEI_HEARTBEAT_INTERVAL_MS,
    heartbeatTimeoutMs: e.HODEI_HEARTBEAT_TIMEOUT_MS ?? 3 * e.HODEI_HEARTBEAT_INTERVAL_MS,
    killGraceMs: e.HODEI_KILL_GRACE_MS,
    shutdownTimeoutMs: e.HODEI_SHUTDOWN_TIMEOUT_MS,
    logStreamKeepBytes: e.HODEI_LOG_STREAM_KEEP_BYTES,
    logStreamMaxBytes: e.HODEI_LOG_STREAM_MAX_BYTES,
    logGrepTimeoutMs: e.HODEI_LOG_GREP_TIMEOUT_MS,
    forgetWorkersAfterMs: e.HODEI_FORGET_WORKERS_AFTER_MS,
    pipelineStartWaitMs: e.HODEI_PIPELINE_START_WAIT_MS,
    ackWaitMs: ACK_WAIT_MS,
  };
}

/** A database URL as it may be logged: its password hidden, whatever it holds (`:` and `@` too),
 *  in the user part or as `?password=`. */
export function hideDatabasePassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^?#]*@/i, '$1:***@').replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}

/** NATS_URL as it may be logged: a user and password, or a token, before `@` hidden in each address. */
export function hideNatsCredentials(url: string): string {
  return url
    .split(',')
    .map((entry) => entry.replace(NATS_CREDENTIALS, '$1***@'))
    .join(',');
}

/** The config as it may be logged: the token replaced, the database password and NATS credentials hidden. */
export function redactConfig(c: Config): Record<string, unknown> {
  return { ...c, apiToken: c.apiToken ? '***' : undefined, databaseUrl: hideDatabasePassword(c.databaseUrl), natsUrl: hideNatsCredentials(c.natsUrl) };
}
