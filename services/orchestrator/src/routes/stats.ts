// /api/v1/stats and /api/v1/cleanup.
import { withTransaction, type Api, type Pool } from '@hodei/platform';
import { CleanupRequest, CleanupResult, Stats } from '@hodei/types';
import * as executionRecords from '../store/executions.js';
import * as jobs from '../store/jobs.js';
import * as runs from '../store/runs.js';
import { jobStats, tableStorage } from '../store/stats.js';
import type { SchedulerClient } from '../scheduler.js';
import type { WorkerManagerClient } from '../worker-manager.js';

const DAY_MS = 24 * 3600 * 1000;
/** One cleanup request deletes at most this many jobs; call again for more. */
const CLEANUP_BATCH = 10_000;

export function statsRoutes(api: Api, deps: { db: Pool; workerManager: WorkerManagerClient; scheduler: SchedulerClient }): void {
  const { db, workerManager, scheduler } = deps;

  api.route(
    {
      method: 'get',
      path: '/api/v1/stats',
      tag: 'stats',
      summary: "Job counts by status and priority, success rate, mean duration, and storage (worker-manager's when it answers; a table's rows past 100,000 as PostgreSQL estimates them)",
      responses: { 200: { description: 'statistics', schema: Stats } },
    },
    async (_input, _req, res) => {
      const [stats, own, remote] = await Promise.all([jobStats(db), tableStorage(db), workerManager.storage()]);
      res.json({ ...stats, storage: { ...own, ...(remote ?? {}) } });
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/cleanup',
      tag: 'stats',
      summary: 'Delete finished jobs of no pipeline untouched for older_than_days with their executions and logs (but those a schedule that may still fire runs), and every execution and pipeline run over for that long but the newest execution of each job (dry_run deletes nothing and tells what would go)',
      body: CleanupRequest,
      responses: {
        200: { description: 'what was (or would be) deleted', schema: CleanupResult },
        502: { description: 'worker-manager or the scheduler answered badly; nothing was deleted' },
        503: { description: 'the scheduler did not answer (nothing was deleted), or worker-manager did not (within 10 minutes; the jobs were not deleted, their executions may have been): run the cleanup again (a dry run, which counts its executions, answers so too)' },
      },
    },
    async ({ body }, _req, res) => {
      const cutoff = new Date(Date.now() - body.older_than_days * DAY_MS);
      // a job a schedule runs stays: its next firing would find nothing to run
      const ids = await jobs.finishedJobsBefore(db, cutoff, CLEANUP_BATCH, await scheduler.scheduledJobs());
      if (body.dry_run) {
        const [executions, pipelineRuns] = await Promise.all([workerManager.cleanup(ids, cutoff, true), runs.countEndedBefore(db, cutoff)]);
        res.json({ dry_run: true, jobs: ids.length, job_ids: ids, ...executions, pipeline_runs: pipelineRuns } satisfies CleanupResult);
        return;
      }
      // worker-manager first: when it cannot delete the executions, the jobs stay too. Jobs that
      // ran since the cutoff (a schedule's, a pipeline's), and executions of no job, keep only
      // their newer executions, as pipelines keep only their newer runs.
      const executions = await workerManager.cleanup(ids, cutoff, false);
      const deleted = await withTransaction(db, (c) => jobs.deleteFinishedJobs(c, ids, cutoff));
      const pipelineRuns = await withTransaction(db, async (c) => {
        await executionRecords.deleteEndedBefore(c, cutoff);
        return runs.deleteEndedBefore(c, cutoff);
      });
      res.json({ dry_run: false, jobs: deleted.length, job_ids: deleted, ...executions, pipeline_runs: pipelineRuns } satisfies CleanupResult);
    },
  );
}
