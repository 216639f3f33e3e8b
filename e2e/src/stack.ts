// One installation of Hodei for a test file: the three services as real processes
// (`node services/<svc>/dist/main.js`) on free ports, with a database and a NATS prefix of their
// own; stop() kills them and drops the database and the two streams.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JetStreamApiCodes, JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { ROOT, settings } from './config.js';
import { call, eventually } from './http.js';

export const SERVICE_NAMES = ['orchestrator', 'scheduler', 'worker-manager'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface StackOptions {
  /** URL of the Postgres server the stack makes its database on. */
  databaseUrl: string;
  natsUrl: string;
  /** Extra environment for the three services. */
  env?: Record<string, string>;
  /** Preload the platform's OpenTelemetry register and export OTLP/HTTP to this base URL. */
  otlpEndpoint?: string;
}

/** The platform's telemetry preload (built by `pnpm build`). */
export const TELEMETRY_REGISTER = join(ROOT, 'packages', 'platform', 'dist', 'telemetry', 'register.js');

export interface Stack {
  id: string;
  prefix: string;
  databaseUrl: string;
  natsUrl: string;
  urls: Record<ServiceName, string>;
  /** Environment that points `hodei` (the CLI) at this stack. */
  cliEnv: Record<string, string>;
  logDir: string;
  /** Starts a worker through worker-manager and waits until the scheduler sees it online. */
  startWorker: (opts?: { name?: string; slots?: number; labels?: Record<string, string> }) => Promise<{ id: string; pid: number }>;
  /** Whether the service processes are still alive. */
  alive: () => Record<ServiceName, boolean>;
  /** The last lines of each service's log (printed when a test fails). */
  logTail: (lines?: number) => string;
  stop: () => Promise<void>;
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** `n` distinct free ports: all held open at once, then released. One at a time, the kernel can
 *  hand the same port out twice (two services of one installation then fought over it). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const srv = createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => (srv.address() as { port: number }).port);
  await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(resolve))));
  return ports;
}

const PORT_VARS: Record<ServiceName, string> = {
  orchestrator: 'HODEI_ORCHESTRATOR',
  scheduler: 'HODEI_SCHEDULER',
  'worker-manager': 'HODEI_WORKER_MANAGER',
};

export async function startStack(opts: StackOptions): Promise<Stack> {
  const id = randomBytes(5).toString('hex');
  const prefix = `e2e${id}`;
  const streams = streamNames(prefix);
  const dbUrl = new URL(opts.databaseUrl);
  dbUrl.pathname = `/hodei_e2e_${id}`;
  const databaseUrl = dbUrl.toString();
  const logDir = mkdtempSync(join(tmpdir(), `hodei-e2e-${id}-`));

  const [orchestrator, scheduler, workerManager] = (await freePorts(3)) as [number, number, number];
  const ports = { orchestrator, scheduler, 'worker-manager': workerManager };
  const urls = Object.fromEntries(SERVICE_NAMES.map((s) => [s, `http://127.0.0.1:${ports[s]}`])) as Record<ServiceName, string>;
  const env: Record<string, string> = {
    ...settings.baseEnv(),
    DATABASE_URL: databaseUrl,
    NATS_URL: opts.natsUrl,
    HODEI_NATS_PREFIX: prefix,
    LOG_LEVEL: 'info',
    HODEI_KILL_GRACE_MS: '1000',
    HODEI_HEARTBEAT_INTERVAL_MS: '500',
    HODEI_SHUTDOWN_TIMEOUT_MS: '10000',
  };
  for (const s of SERVICE_NAMES) {
    env[`${PORT_VARS[s]}_PORT`] = String(ports[s]);
    env[`${PORT_VARS[s]}_URL`] = urls[s];
  }
  if (opts.otlpEndpoint) Object.assign(env, { OTEL_EXPORTER_OTLP_ENDPOINT: opts.otlpEndpoint, OTEL_BSP_SCHEDULE_DELAY: '200' });
  Object.assign(env, opts.env ?? {});
  const preload = opts.otlpEndpoint ? ['--import', TELEMETRY_REGISTER] : [];

  // One creates the database up front, so three processes do not race to.
  await withAdmin(databaseUrl, async (c, name) => {
    await c.query(`CREATE DATABASE "${name}"`);
  });

  const procs = new Map<ServiceName, ChildProcess>();
  const exited = new Map<ServiceName, string>();
  const logFile = (s: ServiceName) => join(logDir, `${s}.log`);
  for (const s of SERVICE_NAMES) {
    const fd = openSync(logFile(s), 'a');
    const child = spawn(process.execPath, [...preload, join(ROOT, 'services', s, 'dist', 'main.js')], { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    child.on('exit', (code, signal) => exited.set(s, `exited with ${signal ?? code}`));
    procs.set(s, child);
  }

  const tail = (n = 30) =>
    SERVICE_NAMES.map((s) => {
      let text = '';
      try {
        text = readFileSync(logFile(s), 'utf8');
      } catch {
        text = '(no log)';
      }
      return `--- ${s} (${logFile(s)}) ---\n${text.split('\n').slice(-n).join('\n')}`;
    }).join('\n');

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // workers first (force: a test may have left a job running), then the services, then the data
    const workers = await call(urls['worker-manager'], 'GET', '/api/v1/workers?limit=1000').catch(() => undefined);
    if (workers?.status === 200 && Array.isArray(workers.body)) {
      for (const w of workers.body as { id: string; status: string; pid: number | null }[]) {
        if (w.status === 'running' || w.status === 'draining' || w.status === 'starting')
          await call(urls['worker-manager'], 'DELETE', `/api/v1/workers/${w.id}?force=true`).catch(() => undefined);
      }
    }
    await Promise.all([...procs.entries()].map(([s, p]) => terminate(p, exited.has(s))));
    await withAdmin(databaseUrl, async (c, name) => {
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }).catch(() => undefined);
    await deleteStreams(opts.natsUrl, streams);
    if (!settings.keepLogs) rmSync(logDir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const dead = SERVICE_NAMES.find((s) => exited.has(s));
      if (dead) throw new Error(`${dead} ${exited.get(dead)} before answering /health`);
      const health = await Promise.all(SERVICE_NAMES.map((s) => fetch(`${urls[s]}/health`).then((r) => r.status, () => 0)));
      if (health.every((h) => h === 200)) break;
      if (Date.now() > deadline) throw new Error(`the services did not all answer /health with 200 within 90 s (${health.join(', ')})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (err) {
    const logs = tail(40);
    await stop();
    throw new Error(`${String(err)}\n${logs}`);
  }

  const startWorker: Stack['startWorker'] = async (o = {}) => {
    const res = await call(urls['worker-manager'], 'POST', '/api/v1/workers', {
      type: 'shell',
      name: o.name ?? `e2e-${randomBytes(3).toString('hex')}`,
      labels: o.labels ?? {},
      capacity: { slots: o.slots ?? 4, cpu_cores: 8, memory_bytes: 8 * 1024 ** 3 },
    });
    if (res.status !== 201) throw new Error(`POST /api/v1/workers answered ${res.status}: ${res.text}`);
    const worker = res.body as { id: string; pid: number };
    await eventually(
      async () => ((await call(urls.scheduler, 'GET', `/api/v1/workers/${worker.id}`)).body?.status === 'online' ? true : undefined),
      30_000,
      `worker ${worker.id} online in the scheduler`,
    );
    return worker;
  };

  return {
    id,
    prefix,
    databaseUrl,
    natsUrl: opts.natsUrl,
    urls,
    cliEnv: { HODEI_ORCHESTRATOR_URL: urls.orchestrator, HODEI_SCHEDULER_URL: urls.scheduler, HODEI_WORKER_MANAGER_URL: urls['worker-manager'] },
    logDir,
    startWorker,
    alive: () => Object.fromEntries(SERVICE_NAMES.map((s) => [s, !exited.has(s)])) as Record<ServiceName, boolean>,
    logTail: tail,
    stop,
  };
}

/** SIGTERM, then SIGKILL when the process is still there after 15 s. */
export async function terminate(p: ChildProcess, alreadyExited = false): Promise<void> {
  if (alreadyExited || p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}

async function withAdmin(databaseUrl: string, fn: (c: pg.Client, name: string) => Promise<void>): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`unexpected database name ${name}`);
  url.pathname = '/postgres';
  const c = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    await fn(c, name);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The services' stream names for a NATS prefix, as `subjects()` in packages/types/src/events.ts makes them. */
function streamNames(prefix: string): string[] {
  const base = prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return [`${base}_EVENTS`, `${base}_LOGS`];
}

/** Deletes the streams; one that does not exist (a service never made it) is not an error. */
export async function deleteStreams(natsUrl: string, streams: string[]): Promise<void> {
  const nc = await connect({ servers: natsUrl, timeout: 5000 });
  try {
    const jsm = await jetstreamManager(nc);
    for (const name of streams) {
      await jsm.streams.delete(name).catch((err: unknown) => {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
      });
    }
  } finally {
    await nc.close();
  }
}
