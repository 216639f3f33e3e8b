// Prometheus metrics of a standalone worker agent, served on HODEI_WORKER_METRICS_PORT (off by default).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, createMetrics, Gauge, startAtZero, type Logger, type Registry } from '@hodei/platform';

export interface WorkerMetrics {
  registry: Registry;
  assignments: Counter<'outcome'>;
  finished: Counter<'status'>;
}

export function createWorkerMetrics(state: { running: () => number; slots: number }): WorkerMetrics {
  const registry = createMetrics('worker');
  const registers = [registry];
  new Gauge({
    name: 'hodei_worker_executions_running',
    help: 'Executions this worker runs now (or still ships logs for)',
    registers,
    collect() {
      this.set(state.running());
    },
  });
  new Gauge({ name: 'hodei_worker_capacity_slots', help: 'Executions this worker may run at once', registers }).set(state.slots);
  const assignments = new Counter({ name: 'hodei_worker_assignments_total', help: 'Assignments received, by outcome', labelNames: ['outcome'], registers });
  const finished = new Counter({ name: 'hodei_worker_executions_finished_total', help: 'Executions this worker ended, by final status', labelNames: ['status'], registers });
  startAtZero(assignments, 'outcome', ['accepted', 'refused']);
  startAtZero(finished, 'status', ['completed', 'failed', 'timed_out', 'cancelled']);
  return { registry, assignments, finished };
}

/** GET /metrics (Prometheus text) on `port`; anything else 404. */
export async function serveMetrics(registry: Registry, port: number, host: string, logger: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        logger.error({ err }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  logger.info({ port: (server.address() as AddressInfo).port }, 'metrics on /metrics');
  return server;
}
