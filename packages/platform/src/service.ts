// Start-up and shutdown shared by the three services: db (migrated) → bus → app → listen.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Registry } from 'prom-client';
import { ConfigError, hideDatabasePassword, hideNatsCredentials, loadConfig, redactConfig, type Config, type Env, type ServiceName } from './config.js';
import { createPool, ensureDatabase, migrate, type Pool } from './db.js';
import { Api } from './http/api.js';
import { answerClientErrors, createApp } from './http/app.js';
import { endStreams } from './http/sse.js';
import { createLogger, type Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { connectBus, type Bus } from './nats.js';
import { flushTelemetry } from './telemetry/trace.js';

export interface ServiceContext {
  config: Config;
  logger: Logger;
  db: Pool;
  bus: Bus;
  api: Api;
  metrics: Registry;
}

/** What a service adds to the shared runtime: its routes, and background work with a stop. */
export interface ServiceParts {
  /** Runs after the server listens (consumers, timers); may return a stop function. */
  start?: () => Promise<void>;
  /** Runs once the HTTP requests are answered; over by `deadline` (ms since the epoch), which leaves
   *  the platform time to close NATS and the pool within HODEI_SHUTDOWN_TIMEOUT_MS. */
  stop?: (deadline: number) => Promise<void>;
}

/** What a stop keeps for closing NATS and the pool, at most (a tenth of a shorter timeout). */
const SHUTDOWN_RESERVE_MS = 1000;

/**
 * Stops the server gracefully, when the returned function is called: no new connection; event
 * streams ended (their clients resume later or elsewhere with Last-Event-ID); every request under
 * way answered whole, its connection closed after it; what is still open after `graceMs` is cut.
 */
function gracefulClose(server: Server, app: Express): (graceMs: number) => Promise<void> {
  let closing = false;
  const answering = new Set<ServerResponse>();
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (closing) res.setHeader('Connection', 'close');
    answering.add(res);
    res.on('close', () => {
      answering.delete(res);
      // a keep-alive connection whose answer was under way (its headers sent) is idle now
      if (closing) server.closeIdleConnections();
    });
  });
  return (graceMs) => {
    closing = true;
    for (const res of answering) if (!res.headersSent) res.setHeader('Connection', 'close');
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    endStreams(app);
    const cut = setTimeout(() => server.closeAllConnections(), graceMs);
    return closed.finally(() => clearTimeout(cut));
  };
}

export interface ServiceDefinition {
  title: string;
  description: string;
  /** Postgres schema owning this service's tables. */
  schema: string;
  migrationsDir: string;
  setup: (ctx: ServiceContext) => Promise<ServiceParts> | ServiceParts;
}

export interface RunningService {
  url: string;
  port: number;
  ctx: ServiceContext;
  app: Express;
  server: Server;
  stop: () => Promise<void>;
}

const START_RETRY_MS = 500;
const START_NOTE_REPEAT_MS = 30_000;
const NOT_LISTENING = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Why PostgreSQL or NATS does not answer (not there yet, starting up, restarting); null for a refusal
 *  (a wrong password, a bad database name) or any other error, which stops the start-up. */
function notAnswering(err: unknown): string | null {
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  if (typeof e.code === 'string' && NOT_LISTENING.has(e.code)) return e.code;
  // SQLSTATE class 08, and 57P01-03: shutting down, starting up, in recovery
  if (typeof e.code === 'string' && /^(08|57P0[123]$)/.test(e.code)) return String(e.message);
  if (typeof e.message === 'string' && e.message.startsWith('Connection terminated')) return e.message;
  if (e.name === 'ConnectionError' || e.name === 'TimeoutError') return String(e.message);
  return null;
}

/** Runs `attempt` until PostgreSQL or NATS answers it: a service started before them (a host booting,
 *  a restart during their outage) waits, saying so, instead of exiting. */
async function untilAnswers<T>(what: string, variable: string, logger: Logger, attempt: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let notedAt = -Infinity;
  for (;;) {
    try {
      const result = await attempt();
      if (notedAt > -Infinity) logger.info({ waited_s: Math.round((performance.now() - started) / 1000) }, `${what} answers`);
      return result;
    } catch (err) {
      const why = notAnswering(err);
      if (why === null) throw err;
      if (performance.now() - notedAt >= START_NOTE_REPEAT_MS) {
        notedAt = performance.now();
        logger.warn({ waited_s: Math.round((notedAt - started) / 1000) }, `${what} does not answer (${why}); waiting for it (check ${variable})`);
      }
      await new Promise((r) => setTimeout(r, START_RETRY_MS));
    }
  }
}

export async function bootService(def: ServiceDefinition, config: Config, logger = createLogger(config.service, config.logLevel)): Promise<RunningService> {
  const startedAt = Date.now();
  logger.info({ config: redactConfig(config) }, 'starting');
  if (!config.apiToken) logger.warn('HODEI_API_TOKEN is not set: listening on 127.0.0.1 only; set a token to accept remote clients');

  const db = createPool(config.databaseUrl, def.schema, logger);
  await untilAnswers(`PostgreSQL at ${hideDatabasePassword(config.databaseUrl)}`, 'DATABASE_URL', logger, async () => {
    await ensureDatabase(config.databaseUrl);
    await migrate(db, def.schema, def.migrationsDir, logger);
  });
  const bus = await untilAnswers(`NATS at ${hideNatsCredentials(config.natsUrl)}`, 'NATS_URL', logger, () =>
    connectBus(config.natsUrl, config.natsPrefix, `hodei-${config.service}`, logger, { logStreamMaxBytes: config.logStreamMaxBytes }),
  );

  const api = new Api();
  const metrics = createMetrics(config.service);
  const ctx: ServiceContext = { config, logger, db, bus, api, metrics };
  const parts = await def.setup(ctx);

  const app = createApp({
    config,
    logger,
    api,
    metrics,
    title: def.title,
    description: def.description,
    startedAt,
    checks: {
      postgres: async () => {
        await db.query('SELECT 1');
      },
      nats: async () => {
        if (bus.nc.isClosed()) throw new Error('connection closed');
        await bus.nc.flush();
      },
    },
  });
  const server = await new Promise<Server>((resolve, reject) => {
    // the app answers an HTTP/1.1 request without Host itself: Node's own 400 has an empty body
    const s = createServer({ requireHostHeader: false }, app);
    s.once('error', reject);
    s.listen(config.port, config.host, () => {
      s.off('error', reject);
      resolve(s);
    });
  }).catch(async (err: unknown) => {
    // the port is taken (or not ours): nothing started yet, so nothing is left open either
    await bus.nc.close().catch(() => undefined);
    await db.end().catch(() => undefined);
    throw err;
  });
  server.keepAliveTimeout = 65_000;
  answerClientErrors(server);
  const closeHttp = gracefulClose(server, app);
  const port = (server.address() as AddressInfo).port;
  await parts.start?.();
  logger.info({ port, host: config.host }, 'listening');

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      logger.info('stopping');
      const timeout = config.shutdownTimeoutMs;
      const deadline = Date.now() + timeout - Math.min(SHUTDOWN_RESERVE_MS, timeout / 10);
      // requests under way still need the consumers, NATS and the pool: those stop after them
      await closeHttp(timeout / 4);
      await parts.stop?.(deadline).catch((err: unknown) => logger.error({ err }, 'stopping background work failed'));
      await bus.nc.drain().catch(() => bus.nc.close());
      await db.end();
      logger.info('stopped');
    })());

  return { url: `http://127.0.0.1:${port}`, port, ctx, app, server, stop };
}

/** Stops `target` on SIGTERM/SIGINT, with a deadline; a second signal exits at once. */
export function handleSignals(target: { stop: () => Promise<void> }, logger: Logger, timeoutMs: number): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(1);
    signalled = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, timeoutMs);
    deadline.unref();
    target.stop().then(
      () => flushTelemetry().then(() => process.exit(0)),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        void flushTelemetry().then(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** Runs a service's main: config → boot → signals; a bad variable or a start-up failure is one clear
 *  log line and exit 1. */
export async function runMain(def: ServiceDefinition, service: ServiceName, env: Env = process.env): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(service, env);
  } catch (err) {
    if (err instanceof ConfigError) createLogger(service).fatal(err.message);
    else createLogger(service).fatal({ err }, 'start-up failed');
    process.exit(1);
  }
  const logger = createLogger(config.service, config.logLevel);
  try {
    const svc = await bootService(def, config, logger);
    handleSignals(svc, logger, config.shutdownTimeoutMs);
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    process.exit(1);
  }
}
