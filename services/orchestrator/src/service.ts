// The orchestrator: pipelines and jobs, their status from execution events, stats and cleanup.
import { fileURLToPath } from 'node:url';
import { bootService, Counter, type Config, type Logger, type RunningService, type ServiceDefinition } from '@hodei/platform';
import { executionConsumers } from './events.js';
import { jobRoutes } from './routes/jobs.js';
import { pipelineRoutes } from './routes/pipelines.js';
import { runRoutes } from './routes/runs.js';
import { statsRoutes } from './routes/stats.js';
import { PipelineRunner } from './runs.js';
import { SchedulerClient } from './scheduler.js';
import { WorkerManagerClient } from './worker-manager.js';

export const definition: ServiceDefinition = {
  title: 'Hodei Jobs orchestrator',
  description: 'Pipelines and jobs: definitions, dependencies, pipeline runs, status, statistics and cleanup.',
  schema: 'orchestrator',
  migrationsDir: fileURLToPath(new URL('../migrations', import.meta.url)),
  setup: (ctx) => {
    const registers = [ctx.metrics];
    const metrics = {
      jobsCreated: new Counter({ name: 'hodei_jobs_created_total', help: 'Jobs defined', registers }),
      pipelinesCreated: new Counter({ name: 'hodei_pipelines_created_total', help: 'Pipelines created', registers }),
      jobsCancelled: new Counter({ name: 'hodei_job_cancel_requests_total', help: 'Executions asked to cancel through a job', registers }),
      events: new Counter({
        name: 'hodei_orchestrator_execution_events_total',
        help: 'Execution events consumed, by kind and outcome',
        labelNames: ['kind', 'outcome'],
        registers,
      }),
    };
    // every series at 0 from the start, so that rate() and increase() count the first of each
    for (const kind of ['queued', 'status']) {
      for (const outcome of ['applied', 'ignored', 'unknown_job', 'invalid']) metrics.events.inc({ kind, outcome }, 0);
    }
    const workerManager = new WorkerManagerClient(ctx.config.urls['worker-manager'], ctx.config.apiToken, ctx.logger);
    const maxPayload = () => ctx.bus.nc.info?.max_payload;
    pipelineRoutes(ctx.api, { db: ctx.db, metrics, maxPayload });
    jobRoutes(ctx.api, { db: ctx.db, workerManager, metrics, maxPayload });
    const runner = new PipelineRunner(ctx.db, workerManager, ctx.bus, ctx.logger.child({ component: 'pipeline-runs' }), { startWaitMs: ctx.config.pipelineStartWaitMs });
    runRoutes(ctx.api, { db: ctx.db, runner, bus: ctx.bus, logger: ctx.logger });
    const scheduler = new SchedulerClient(ctx.config.urls.scheduler, ctx.config.apiToken);
    statsRoutes(ctx.api, { db: ctx.db, workerManager, scheduler });
    const consumers = executionConsumers(
      ctx.bus,
      ctx.db,
      ctx.logger,
      metrics.events,
      (u) => runner.onExecution(u.execution_id, u.job_id, u.status),
      (id) => workerManager.cancel(id),
    );
    return {
      start: async () => {
        await consumers.start();
        await runner.start();
      },
      stop: async () => {
        await runner.stop();
        await consumers.stop();
      },
    };
  },
};

export function startOrchestrator(config: Config, logger?: Logger): Promise<RunningService> {
  return bootService(definition, config, logger);
}
