// Start-up and shutdown shared by the three services: db (migrated) → bus → app → listen.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import type { Registry } from 'prom-client';
import { ConfigError, loadConfig, redactConfig, type Config, type Env, type ServiceName } from './config.js';
import { createPool, ensureDatabase, migrate, type Pool } from './db.js';
import { Api } from './http/api.js';
import { createApp } from './http/app.js';
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

export async function bootService(def: ServiceDefinition, config: Config, logger = createLogger(config.service, config.logLevel)): Promise<RunningService> {
  const startedAt = Date.now();
  logger.info({ config: redactConfig(config) }, 'starting');
  if (!config.apiToken) logger.warn('HODEI_API_TOKEN is not set: listening on 127.0.0.1 only; set a token to accept remote clients');

  await ensureDatabase(config.databaseUrl);
  const db = createPool(config.databaseUrl, def.schema, logger);
  await migrate(db, def.schema, def.migrationsDir, logger);
  const bus = await connectBus(config.natsUrl, config.natsPrefix, `hodei-${config.service}`, logger);

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
    // Express 5 calls back with the error (EADDRINUSE…) instead of emitting it
    const s = app.listen(config.port, config.host, (err?: Error) => (err ? reject(err) : resolve(s)));
  }).catch(async (err: unknown) => {
    // the port is taken (or not ours): nothing started yet, so nothing is left open either
    await bus.nc.close().catch(() => undefined);
    await db.end().catch(() => undefined);
    throw err;
  });
  server.keepAliveTimeout = 65_000;
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
