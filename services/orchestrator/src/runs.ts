// Pipeline runs: start every job of a pipeline once the jobs it depends on completed. A run's
// state is derived again from its jobs' executions each time one of them changes (sync), so
// events arriving in any order, or twice, lead to the same result.
import { ConflictError, HttpError, newId, NotFoundError, ServiceUnavailableError, withTransaction, type Logger, type Pool } from '@hodei/platform';
import { type ExecutionStatus, type PipelineRun, type PipelineRunJobStatus, type PipelineRunStatus } from '@hodei/types';
import * as jobs from './store/jobs.js';
import { getPipeline } from './store/pipelines.js';
import * as runs from './store/runs.js';
import type { WorkerManagerClient } from './worker-manager.js';

const UNSUCCESSFUL = new Set<PipelineRunJobStatus>(['failed', 'cancelled', 'timed_out', 'lost', 'skipped']);
const ACTIVE = new Set<PipelineRunJobStatus>(['waiting', 'starting', 'queued', 'running']);

function runStatus(statuses: PipelineRunJobStatus[]): PipelineRunStatus {
  if (statuses.some((s) => ACTIVE.has(s))) return 'running';
  if (statuses.every((s) => s === 'completed')) return 'completed';
  if (statuses.some((s) => s === 'failed' || s === 'timed_out' || s === 'lost')) return 'failed';
  return 'cancelled';
}

export class PipelineRunner {
  constructor(
    private readonly db: Pool,
    private readonly workerManager: WorkerManagerClient,
    private readonly logger: Logger,
  ) {}

  /** Creates a run of every job of the pipeline and starts those without dependencies. */
  async create(pipelineId: string): Promise<PipelineRun> {
    const id = newId();
    await withTransaction(this.db, async (c) => {
      const p = await getPipeline(c, pipelineId, true);
      if (!p) throw new NotFoundError('pipeline', pipelineId);
      if (p.status === 'archived') throw new ConflictError(`pipeline ${pipelineId} is archived`);
      const list = await jobs.pipelineJobs(c, pipelineId);
      if (!list.length) throw new ConflictError(`pipeline ${pipelineId} has no jobs to run`);
      const runnable = new Set(await jobs.runnableJobIds(c, pipelineId));
      const idle = list.filter((j) => !runnable.has(j.id)).map((j) => j.name);
      if (idle.length) throw new ConflictError(`these jobs have no command or script yet: ${idle.join(', ')}`);
      await runs.insertRun(c, id, pipelineId, list);
    });
    try {
      await this.sync(id, true);
    } catch (err) {
      // worker-manager down before anything started: leave no run behind
      await runs.deleteRun(this.db, id);
      throw err;
    }
    return (await runs.getRun(this.db, id))!;
  }

  /** Re-derives the runs that involve this execution (called after each execution event). */
  async onExecution(executionId: string, jobId: string): Promise<void> {
    for (const runId of await runs.runsForExecution(this.db, executionId, jobId)) await this.sync(runId);
  }

  /**
   * Brings a run up to date: job statuses from their executions, skipped when a dependency did not
   * succeed, started when all dependencies completed; then the run's own status.
   */
  async sync(runId: string, failIfUnreachable = false): Promise<void> {
    for (;;) {
      const toStart = await withTransaction(this.db, (c) => this.derive(c, runId));
      if (!toStart.length) return;
      for (const jobId of toStart) {
        await this.start(runId, jobId, failIfUnreachable);
        failIfUnreachable = false; // once something started, the run stays and records failures
      }
    }
  }

  /**
   * Cancels a running run: nothing more starts, waiting jobs are skipped, and its queued or running
   * executions are asked to stop (their final events then settle the run).
   */
  async cancel(runId: string): Promise<PipelineRun> {
    const active = await withTransaction(this.db, async (c) => {
      const run = await runs.lockRun(c, runId);
      if (!run) throw new NotFoundError('pipeline run', runId);
      if (run.status !== 'running') throw new ConflictError(`pipeline run ${runId} is already ${run.status}`);
      await runs.requestCancel(c, runId);
      return (await runs.runJobs(c, runId)).filter((j) => j.execution_id && (j.status === 'queued' || j.status === 'running'));
    });
    await this.sync(runId); // waiting jobs end as skipped at once
    for (const j of active) await this.workerManager.cancel(j.execution_id!);
    return (await runs.getRun(this.db, runId))!;
  }

  private async derive(c: Parameters<typeof runs.runJobs>[0], runId: string): Promise<string[]> {
    const run = await runs.lockRun(c, runId);
    if (!run) return [];
    const rows = await runs.runJobs(c, runId);
    const execs = await runs.executionStatuses(c, rows.flatMap((r) => (r.execution_id ? [r.execution_id] : [])));
    const status = new Map<string, PipelineRunJobStatus>();
    const execution = new Map<string, string | null>();
    const derived: string[] = [];
    for (const r of rows) {
      execution.set(r.job_id, r.execution_id);
      if (r.execution_id) {
        let s: ExecutionStatus = execs.get(r.execution_id) ?? (r.status === 'starting' ? 'queued' : (r.status as ExecutionStatus));
        if (s === 'lost') {
          const retry = await runs.newestExecutionAfter(c, r.job_id, r.execution_id);
          if (retry) {
            s = retry.status;
            execution.set(r.job_id, retry.execution_id);
          }
        }
        status.set(r.job_id, s === 'pending' ? 'queued' : s);
      } else if (r.status === 'starting' || (r.status === 'failed' && r.message)) {
        status.set(r.job_id, r.status); // being started, or could not be started
      } else {
        derived.push(r.job_id);
        status.set(r.job_id, 'waiting');
      }
    }
    const byId = new Map(rows.map((r) => [r.job_id, r]));
    const toStart: string[] = [];
    for (let changed = true; changed; ) {
      changed = false;
      for (const jobId of derived) {
        const deps = byId.get(jobId)!.depends_on.map((d) => status.get(d) ?? 'completed'); // a deleted job blocks nothing
        const next: PipelineRunJobStatus = deps.some((d) => UNSUCCESSFUL.has(d))
          ? 'skipped'
          : run.cancel_requested
            ? 'skipped'
            : deps.every((d) => d === 'completed')
              ? 'starting'
              : 'waiting';
        if (next !== status.get(jobId)) {
          status.set(jobId, next);
          changed = true;
        }
      }
    }
    for (const r of rows) {
      const s = status.get(r.job_id)!;
      const e = execution.get(r.job_id) ?? null;
      if (s === 'starting' && r.status !== 'starting' && !r.execution_id) toStart.push(r.job_id);
      if (s !== r.status || e !== r.execution_id) await runs.updateRunJob(c, runId, r.job_id, { status: s, execution_id: e });
    }
    await runs.setRunStatus(c, runId, runStatus([...status.values()]));
    return toStart;
  }

  private async start(runId: string, jobId: string, failIfUnreachable: boolean): Promise<void> {
    let executionId: string;
    try {
      executionId = await this.workerManager.execute(jobId);
    } catch (err) {
      if (failIfUnreachable && err instanceof ServiceUnavailableError) throw err;
      const message = `could not start: ${err instanceof HttpError ? err.message : String(err)}`;
      this.logger.warn({ err, run_id: runId, job_id: jobId }, 'starting a pipeline job failed');
      await runs.updateRunJob(this.db, runId, jobId, { status: 'failed', message }, 'starting');
      return;
    }
    await runs.updateRunJob(this.db, runId, jobId, { status: 'queued', execution_id: executionId }, 'starting');
  }
}

