import { Counter, Gauge, Histogram, startAtZero, type Registry } from '@hodei/platform';
import { FINAL_STATUSES, MAX_TIMEOUT_SECONDS } from '@hodei/types';

export interface WmMetrics {
  finished: Counter<'status'>;
  duration: Histogram<'status'>;
  linesIngested: Counter;
  logBacklog: Gauge;
  workerProcesses: Gauge;
}

export function createWmMetrics(registry: Registry): WmMetrics {
  const metrics: WmMetrics = {
    finished: new Counter({
      name: 'hodei_executions_finished_total',
      help: 'Executions that reached a final status, by status',
      labelNames: ['status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'hodei_execution_duration_seconds',
      help: 'Duration of finished executions (started to finished)',
      labelNames: ['status'],
      // from a job that only starts and exits to MAX_TIMEOUT_SECONDS
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, MAX_TIMEOUT_SECONDS],
      registers: [registry],
    }),
    linesIngested: new Counter({ name: 'hodei_log_lines_ingested_total', help: 'Log lines stored', registers: [registry] }),
    logBacklog: new Gauge({
      name: 'hodei_log_backlog_messages',
      help: 'Log messages not stored yet (over 600, workers pause reading their jobs\' output)',
      registers: [registry],
    }),
    workerProcesses: new Gauge({ name: 'hodei_worker_processes', help: 'Worker agent processes this service runs', registers: [registry] }),
  };
  startAtZero(metrics.finished, 'status', FINAL_STATUSES);
  startAtZero(metrics.duration, 'status', FINAL_STATUSES);
  return metrics;
}
