// worker-manager: the worker agent processes it starts, executions and their logs, results and
// live streams.
import { fileURLToPath } from 'node:url';
import { bootService, decodeJson, FailureLog, type Config, type Logger, type ServiceDefinition } from '@hodei/platform';
import { WorkerHeartbeat } from '@hodei/types';
import { Consumers } from './consumers.js';
import { Executions } from './executions.js';
import { EventHub } from './live/event-hub.js';
import { LogHub } from './live/log-hub.js';
import { LiveRelay } from './live/relay.js';
import { createWmMetrics } from './metrics.js';
import { registerExecutionRoutes } from './routes/executions.js';
import { registerLogRoutes } from './routes/logs.js';
import { Retries } from './retries.js';
import { registerWorkerRoutes } from './routes/workers.js';
import { Supervisor } from './workers/supervisor.js';

/** Workers gone longer than HODEI_FORGET_WORKERS_AFTER_MS are looked for every so long, within these bounds. */
const FORGET_CHECK_MS = { min: 1000, max: 60_000 };

export const definition: ServiceDefinition = {
  title: 'Hodei Jobs — Worker Manager',
  description: 'Worker processes, executions, log lines and their live streams, results.',
  schema: 'worker_manager',
  migrationsDir: fileURLToPath(new URL('../migrations', import.meta.url)),
  setup: async (ctx) => {
    const metrics = createWmMetrics(ctx.metrics);
    const logHub = new LogHub(ctx.db, ctx.config.logFinalGraceMs);
    const events = new EventHub();
    const retries = new Retries(ctx);
    const live = new LiveRelay(ctx, logHub, events);
    const executions = new Executions(ctx, logHub, live, metrics, retries);
    const supervisor = new Supervisor(ctx, metrics);
    const consumers = new Consumers(ctx, logHub, executions, metrics);

    registerWorkerRoutes(ctx.api, ctx.db, supervisor);
    registerExecutionRoutes(ctx.api, ctx.db, executions);
    registerLogRoutes(ctx.api, ctx.db, logHub, events, ctx.config.logGrepTimeoutMs);

    await supervisor.reconcile();
    live.start();
    const heartbeats = ctx.bus.nc.subscribe(ctx.bus.subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const hb = WorkerHeartbeat.parse(decodeJson(msg.data));
          supervisor.noteHeartbeat(hb.worker_id, hb.timestamp);
        } catch {
          ctx.logger.debug({ subject: msg.subject }, 'ignoring a malformed heartbeat');
        }
      },
    });

    // a row per worker ever started: the history would only grow
    let forgetting: Promise<void> | undefined;
    const forgetEveryMs = Math.max(FORGET_CHECK_MS.min, Math.min(FORGET_CHECK_MS.max, ctx.config.forgetWorkersAfterMs));
    const forgetFailures = new FailureLog(ctx.logger, 'forgetting workers long gone', `it is tried again every ${forgetEveryMs / 1000} s`);
    const forget = () =>
      (forgetting ??= supervisor
        .forgetGone()
        .then(() => forgetFailures.worked(), (err: unknown) => forgetFailures.failed(err))
        .finally(() => (forgetting = undefined)));
    let forgetTimer: NodeJS.Timeout | undefined;

    return {
      start: async () => {
        await consumers.start();
        await retries.start();
        await forget();
        forgetTimer = setInterval(() => void forget(), forgetEveryMs).unref();
      },
      // Over by the platform's deadline: what is not done then is left to JetStream's redelivery.
      stop: async (deadline) => {
        clearInterval(forgetTimer);
        await forgetting;
        heartbeats.unsubscribe();
        live.stop();
        await retries.stop();
        await supervisor.stopAll(deadline);
        await consumers.stop(deadline);
        logHub.closeAll();
      },
    };
  },
};

export function startWorkerManager(config: Config, logger?: Logger) {
  return bootService(definition, config, logger);
}
