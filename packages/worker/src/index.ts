// @hodei/worker: the worker agent. Start one in-process with startWorker(), or run dist/main.js.
export { startWorker, type StartWorkerOptions, type WorkerHandle } from './worker.js';
export { loadWorkerConfig, resolveWorkerConfig, parseLabels, redactWorkerConfig, WorkerConfigError } from './config.js';
export type { WorkerConfig, WorkerOptions } from './config.js';
export { createWorkerMetrics, serveMetrics, type WorkerMetrics } from './metrics.js';
export { LINE_CONTINUES_SUFFIX, MAX_LINE_BYTES } from './lines.js';
export { parseProgress } from './progress.js';
