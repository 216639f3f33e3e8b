// `node packages/worker/dist/main.js`: a worker agent configured from the environment.
// SIGTERM/SIGINT drain (running jobs finish, then exit 0); a second signal force-stops.
import { createLogger, flushTelemetry } from '@hodei/platform';
import { loadWorkerConfig, redactWorkerConfig, type WorkerConfig } from './config.js';
import { createWorkerMetrics, serveMetrics, type WorkerMetrics } from './metrics.js';
import { NatsWaitAborted } from './connect.js';
import { WorkerIdInUse } from './sole.js';
import { startWorker, type WorkerHandle } from './worker.js';

let config: WorkerConfig;
try {
  config = loadWorkerConfig();
} catch (err) {
  createLogger('worker').fatal({ err }, (err as Error).message);
  process.exit(1);
}
const logger = createLogger('worker', config.logLevel);
try {
  logger.info({ config: redactWorkerConfig(config) }, 'starting worker');
  let worker: WorkerHandle | undefined;
  let metrics: WorkerMetrics | undefined;
  if (config.metricsPort !== undefined) {
    metrics = createWorkerMetrics({ running: () => worker?.running().length ?? 0, slots: config.capacity.slots });
    await serveMetrics(metrics.registry, config.metricsPort, config.metricsHost, logger);
  }
  // Signal handlers go in before the worker starts: a signal while it waits for NATS stops it (nothing
  // can have run); one later in its start-up drains right after it.
  let signals = 0;
  const starting = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (!worker) {
      starting.abort();
      return logger.info({ signal }, 'signal during start-up');
    }
    if (signals === 1) {
      logger.info({ signal }, 'draining (send the signal again to force)');
      void worker.drain();
    } else {
      logger.warn({ signal }, 'force stop');
      void worker.stop({ force: true });
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  worker = await startWorker({ ...config, logger, metrics, signal: starting.signal });
  if (signals > 0) void worker.drain();
  await worker.done;
  await flushTelemetry();
  const failure = worker.failure();
  if (failure) logger.fatal(failure);
  process.exit(failure ? 1 : 0);
} catch (err) {
  if (err instanceof NatsWaitAborted) {
    logger.info(err.message);
    process.exit(0);
  }
  if (err instanceof WorkerIdInUse) {
    logger.fatal(err.message);
    process.exit(1);
  }
  logger.fatal({ err }, 'worker failed');
  process.exit(1);
}
