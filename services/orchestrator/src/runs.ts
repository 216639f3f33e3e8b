// Pipeline runs: start every job of a pipeline once the jobs it depends on completed. A run's
// state lives in Postgres and is derived again from its jobs' executions each time one of them
// changes (sync), so events arriving in any order, or twice, or after a restart, lead to the same
// result. A job is started at most once per run: moving its row to `starting` under the run's row
// lock is the claim, and a claim left behind by a stopped orchestrator is taken over only after
// checking worker-manager for an execution carrying the run's id (HODEI_PIPELINE_RUN_ID). A start
// worker-manager surely did not take (it is restarting, or its NATS is away) gives the claim up:
// the sweep tries it again until worker-manager has been unavailable for startWaitMs.
import { checkDefinitionFits, ConflictError, eachLimited, encodeJson, FailureLog, HttpError, newId, NotFoundError, RecentSet, requestNotTaken, ServiceUnavailableError, withTransaction, type Bus, type Logger, type Pool } from '@hodei/platform';
import { FINAL_STATUSES, type ExecutionStatus, type PipelineRun, type PipelineRunEvent, type PipelineRunJobStatus, type PipelineRunStatus } from '@hodei/types';
import { findCycle } from './dag.js';
import * as jobs from './store/jobs.js';
import { getPipeline } from './store/pipelines.js';
import * as runs from './store/runs.js';
import type { WorkerManagerClient } from './worker-manager.js';

const UNSUCCESSFUL = new Set<PipelineRunJobStatus>(['failed', 'cancelled', 'timed_out', 'lost', 'skipped']);
const ACTIVE = new Set<PipelineRunJobStatus>(['waiting', 'starting', 'queued', 'running']);
/** Every job of a run gets these, so a start can be recognised at worker-manager after a restart. */
export const RUN_ID_ENV = 'HODEI_PIPELINE_RUN_ID';
export const PIPELINE_ID_ENV = 'HODEI_PIPELINE_ID';
/** Executions asked for at once when many jobs become ready together (a fan-out). */
const START_CONCURRENCY = 16;
const FINAL = new Set<string>(FINAL_STATUSES);
const CANCELLED_SKIP = 'skipped: the run was cancelled';
/** How many handled final events are remembered, so their second copy is skipped. */
const HANDLED_FINAL_MAX = 10_000;

function runStatus(statuses: PipelineRunJobStatus[]): PipelineRunStatus {
  if (statuses.some((s) => ACTIVE.has(s))) return 'running';
  if (statuses.every((s) => s === 'completed')) return 'completed';
  if (statuses.some((s) => s === 'failed' || s === 'timed_out' || s === 'lost')) return 'failed';
  return 'cancelled';
}

type Db = Parameters<typeof runs.runJobs>[0];

interface Derived {
  run: runs.LockedRun | null;
  toStart: string[];
  events: PipelineRunEvent[];
}

export interface RunnerOptions {
  /** A start claimed longer ago than this without an execution is taken over (above the 10 s execute timeout). */
  staleStartMs?: number;
  /** How often stale starts are looked for, and starts worker-manager did not take tried again. */
  sweepMs?: number;
  /** How long a job's start is tried again while worker-manager is unavailable before the job fails. */
  startWaitMs?: number;
}

/** A wait as a user reads it: 800 ms, 5 s, 5 min. */
function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000 || ms % 60_000) return `${Math.round(ms / 1000)} s`;
  return `${ms / 60_000} min`;
}

export class PipelineRunner {
  private sweeper: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private readonly staleStartMs: number;
  private readonly sweepMs: number;
  private readonly startWaitMs: number;
  private readonly sweepFailures: FailureLog;
  /** Final events being handled (execution id + status) and the last ones handled, oldest first. */
  private readonly finalInFlight = new Map<string, Promise<void>>();
  private readonly handledFinal = new RecentSet<string>(HANDLED_FINAL_MAX);
  private readonly background = new Set<Promise<void>>();
  private stopping = false;

  constructor(
    private readonly db: Pool,
    private readonly workerManager: WorkerManagerClient,
    private readonly bus: Bus,
    private readonly logger: Logger,
    opts: RunnerOptions = {},
  ) {
    this.staleStartMs = opts.staleStartMs ?? 15_000;
    this.sweepMs = opts.sweepMs ?? 5_000;
    this.startWaitMs = opts.startWaitMs ?? 5 * 60_000;
    this.sweepFailures = new FailureLog(logger, 'sweeping pipeline runs');
  }

  /** Brings every running run up to date (events handled while we were down already are), then sweeps stale starts now and then. */
  async start(): Promise<void> {
    this.sweeping = this.sweep(true);
    this.sweeper = setInterval(() => {
      if (!this.sweeping) this.sweeping = this.sweep(false);
    }, this.sweepMs);
    this.sweeper.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    await this.sweeping;
    await Promise.all(this.background);
  }

  /** Work of a run that its request does not wait for; a stop waits for it (a crash leaves claims the sweep takes over). */
  private inBackground(runId: string, work: () => Promise<void>): void {
    const p = work()
      .catch((err: unknown) => this.logger.warn({ err, run_id: runId }, 'starting the jobs of a new run failed; the sweep takes them over'))
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  /** Creates a run of every job of the pipeline and starts those without dependencies. */
  async create(pipelineId: string, env: Record<string, string> = {}): Promise<PipelineRun> {
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
      // none can be made through the API since the checks are serialised, but an older installation may hold one
      const cycle = findCycle(new Map(list.map((j) => [j.id, j.depends_on])));
      if (cycle) {
        const name = new Map(list.map((j) => [j.id, j.name]));
        throw new ConflictError(`these jobs depend on each other in a cycle, so none of them could start: ${[...cycle, cycle[0]!].map((id) => name.get(id)).join(' → ')}; change their depends_on`);
      }
      // each job fitted in one NATS message when it was defined; the run's env is added to every one
      if (Object.keys(env).length) {
        const runEnv = { ...env, [RUN_ID_ENV]: id, [PIPELINE_ID_ENV]: pipelineId };
        for (const j of list) {
          const job = (await jobs.getJob(c, j.id))!;
          checkDefinitionFits(this.bus.nc.info?.max_payload, { ...job, env: { ...job.env, ...runEnv } }, `job ${j.name} with the run's env`);
        }
      }
      await runs.insertRun(c, id, pipelineId, list, env);
    });
    this.publish([{ type: 'run', run_id: id, pipeline_id: pipelineId, status: 'running', timestamp: new Date().toISOString() }]);
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
  async onExecution(executionId: string, jobId: string, status?: string): Promise<void> {
    if (status === 'running') {
      // a job of a run moving from queued to running changes nothing else in the run: no derive, no run lock
      const moved = await runs.markRunning(this.db, executionId);
      const now = new Date().toISOString();
      this.publish(moved.map((m) => ({ type: 'job' as const, ...m, status: 'running' as const, execution_id: executionId, exit_code: null, timestamp: now })));
    }
    if (!status || !FINAL.has(status)) {
      for (const runId of await runs.runsForExecution(this.db, executionId, jobId, status)) await this.sync(runId);
      return;
    }
    // A final status comes twice (the worker's status, then worker-manager's finished): the runs
    // advance on whichever is handled first; the other waits for it and then has nothing to do.
    // (Memory only: a restart derives every running run again anyway.)
    const key = `${executionId} ${status}`;
    if (this.handledFinal.has(key)) return;
    const pending = this.finalInFlight.get(key);
    if (pending && (await pending.then(() => true, () => false))) return;
    const work = (async () => {
      const leaf = status === 'completed' ? executionId : undefined;
      for (const runId of await runs.runsForExecution(this.db, executionId, jobId, status)) await this.sync(runId, false, leaf);
    })();
    this.finalInFlight.set(key, work);
    try {
      await work;
      this.handledFinal.add(key);
    } finally {
      if (this.finalInFlight.get(key) === work) this.finalInFlight.delete(key);
    }
  }

  /**
   * Brings a run up to date: job statuses from their executions, skipped when a dependency did not
   * succeed, started when all dependencies completed; then the run's own status.
   */
  async sync(runId: string, failIfUnreachable = false, completedExecution?: string): Promise<void> {
    for (let hint = completedExecution; ; hint = undefined) {
      const d = await withTransaction(this.db, (c) => (hint ? this.deriveCompleted(c, runId, hint) : this.derive(c, runId)));
      this.publish(d.events);
      if (!d.toStart.length || !d.run) return;
      if (failIfUnreachable && d.toStart.length > 1) {
        // The run's creator waits for one start: worker-manager took it, so the run stays. The
        // others go on in the background, so that a fan-out of thousands is answered at once.
        const [first, ...rest] = d.toStart;
        const run = d.run;
        const firstAgain = await this.startJob(runId, run, first!, true);
        this.inBackground(runId, async () => {
          if ((await this.startAll(runId, run, rest, false)) || firstAgain) await this.sync(runId);
        });
        return;
      }
      const again = await this.startAll(runId, d.run, d.toStart, failIfUnreachable);
      failIfUnreachable = false; // once something started, the run stays and records failures
      // again only when a start failed (its dependents are skipped) or its execution moved on
      // before its id was recorded (those events found no run to advance)
      if (!again) return;
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
    // The queued first: a running job that stops frees its slot, which a queued one would take
    // (and start) if its own cancel were still on its way.
    for (const status of ['queued', 'running']) {
      await eachLimited(active.filter((j) => j.status === status), START_CONCURRENCY, async (j) => {
        await this.workerManager.cancel(j.execution_id!);
      });
    }
    return (await runs.getRun(this.db, runId))!;
  }

  private publish(events: PipelineRunEvent[]): void {
    for (const e of events) {
      try {
        // core publish: no round trip; the subject is in the events stream, so it is kept too
        this.bus.nc.publish(this.bus.subjects.pipelineRun(e.run_id), encodeJson(e));
      } catch (err) {
        this.logger.warn({ err, run_id: e.run_id }, 'publishing a pipeline run event failed');
      }
    }
  }

  /**
   * A job that no other job of the run depends on completed (a fan-out's leaf): only its row
   * changes, unless it was the run's last active job (then the whole run is derived).
   */
  private async deriveCompleted(c: Db, runId: string, executionId: string): Promise<Derived> {
    const run = await runs.lockRun(c, runId);
    if (!run) return { run: null, toStart: [], events: [] };
    const leaf = run.status === 'running' ? await runs.completeLeaf(c, runId, executionId) : null;
    if (!leaf) return this.derive(c, runId);
    const event: PipelineRunEvent = {
      type: 'job',
      run_id: runId,
      pipeline_id: run.pipeline_id,
      job_id: leaf.job_id,
      name: leaf.name,
      status: 'completed',
      execution_id: executionId,
      exit_code: leaf.exit_code,
      message: leaf.message,
      timestamp: new Date().toISOString(),
    };
    if (leaf.others_active) return { run, toStart: [], events: [event] };
    const d = await this.derive(c, runId);
    return { ...d, events: [event, ...d.events] };
  }

  private async derive(c: Db, runId: string): Promise<Derived> {
    const run = await runs.lockRun(c, runId);
    if (!run) return { run: null, toStart: [], events: [] };
    const rows = await runs.runJobs(c, runId);
    const status = new Map<string, PipelineRunJobStatus>();
    const execution = new Map<string, string | null>();
    const derived: string[] = [];
    for (const r of rows) {
      execution.set(r.job_id, r.execution_id);
      if (r.execution_id) {
        let s: ExecutionStatus = r.execution_status ?? (r.status === 'starting' ? 'queued' : (r.status as ExecutionStatus));
        if (s === 'lost' || s === 'failed') {
          // Whether a retry follows is worker-manager's call, from the max_retries the execution
          // started with (a PATCH of the job since changes nothing): its finished event names the
          // retry, recorded with that end. Follow the newest attempt.
          const retry = await runs.latestRetry(c, r.execution_id);
          if (retry) {
            s = retry.status;
            execution.set(r.job_id, retry.execution_id);
          }
        }
        status.set(r.job_id, s === 'pending' ? 'queued' : s);
      } else if ((r.status === 'starting' && !(r.unclaimed && run.cancel_requested)) || (r.status === 'failed' && r.message)) {
        // being started, or could not be started; a start waiting for worker-manager is skipped by a cancel
        status.set(r.job_id, r.status);
      } else {
        derived.push(r.job_id);
        status.set(r.job_id, 'waiting');
      }
    }
    const byId = new Map(rows.map((r) => [r.job_id, r]));
    const toStart: string[] = [];
    const skippedBecause = new Map<string, string>();
    for (let changed = true; changed; ) {
      changed = false;
      for (const jobId of derived) {
        const dependsOn = byId.get(jobId)!.depends_on;
        const deps = dependsOn.map((d) => status.get(d) ?? 'completed'); // a deleted job blocks nothing
        const blocker = dependsOn.find((d) => UNSUCCESSFUL.has(status.get(d) ?? 'completed'));
        const next: PipelineRunJobStatus = blocker || run.cancel_requested ? 'skipped' : deps.every((d) => d === 'completed') ? 'starting' : 'waiting';
        if (next === 'skipped')
          skippedBecause.set(
            jobId,
            run.cancel_requested
              ? CANCELLED_SKIP
              : `skipped: it depends on ${byId.get(blocker!)!.name}, which ${status.get(blocker!) === 'skipped' ? 'was skipped' : `ended ${status.get(blocker!)}`}`,
          );
        if (next !== status.get(jobId)) {
          status.set(jobId, next);
          changed = true;
        }
      }
    }
    const now = new Date().toISOString();
    const events: PipelineRunEvent[] = [];
    const changes: runs.RunJobChange[] = [];
    for (const r of rows) {
      const s = status.get(r.job_id)!;
      const e = execution.get(r.job_id) ?? null;
      if (s === 'starting' && r.status !== 'starting' && !r.execution_id) toStart.push(r.job_id);
      if (s !== r.status || e !== r.execution_id) {
        const message = s === 'skipped' ? skippedBecause.get(r.job_id) : undefined;
        changes.push({ job_id: r.job_id, status: s, execution_id: e, message });
        events.push({
          type: 'job',
          run_id: runId,
          pipeline_id: run.pipeline_id,
          job_id: r.job_id,
          name: r.name,
          status: s,
          execution_id: e,
          exit_code: e === r.execution_id ? r.exit_code : null,
          message: message ?? r.message,
          timestamp: now,
        });
      }
    }
    await runs.updateRunJobs(c, runId, changes); // one statement, however many jobs a fan-out changes
    const next = runStatus([...status.values()]);
    if (next !== run.status) await runs.setRunStatus(c, runId, next);
    if (next !== run.status) events.push({ type: 'run', run_id: runId, pipeline_id: run.pipeline_id, status: next, timestamp: now });
    return { run, toStart, events };
  }

  /** Starts the jobs (a few at a time); true when the run must be derived again. */
  private async startAll(runId: string, run: runs.LockedRun, jobIds: string[], failIfUnreachable: boolean): Promise<boolean> {
    let again = false;
    await this.withFreshClaims(runId, jobIds, async (jobId) => {
      if (await this.startJob(runId, run, jobId, failIfUnreachable)) again = true;
    });
    return again;
  }

  /**
   * Calls `start` for each claimed job of the run, a few at a time. Thousands take longer than
   * staleStartMs: the claims not done yet stay fresh, or the sweep would take them over and start
   * those jobs a second time.
   */
  private async withFreshClaims(runId: string, jobIds: string[], start: (jobId: string) => Promise<void>): Promise<void> {
    const pending = new Set(jobIds);
    const renew = setInterval(() => {
      runs.renewClaims(this.db, runId, [...pending]).catch((err: unknown) => this.logger.warn({ err, run_id: runId }, 'renewing start claims failed'));
    }, this.staleStartMs / 3);
    renew.unref();
    try {
      await eachLimited(jobIds, START_CONCURRENCY, async (jobId) => {
        try {
          await start(jobId);
        } finally {
          pending.delete(jobId);
        }
      });
    } finally {
      clearInterval(renew);
    }
  }

  private runEnv(runId: string, run: { pipeline_id: string; env: Record<string, string> }): Record<string, string> {
    return { ...run.env, [RUN_ID_ENV]: runId, [PIPELINE_ID_ENV]: run.pipeline_id };
  }

  /** Starts one job; true when the run must be derived again (see sync). */
  private async startJob(runId: string, run: { pipeline_id: string; env: Record<string, string> }, jobId: string, failIfUnreachable: boolean): Promise<boolean> {
    // A stopping orchestrator no longer answers worker-manager's request for the job's definition:
    // the start stays claimed, and the sweep of whoever runs next takes it over.
    if (this.stopping) return false;
    // a fan-out sends its starts a few at a time: those not sent when the run is cancelled never are
    const skipped = await runs.skipStartOfCancelled(this.db, runId, jobId, CANCELLED_SKIP);
    if (skipped !== null) {
      this.publish([{ type: 'job', run_id: runId, pipeline_id: run.pipeline_id, job_id: jobId, name: skipped, status: 'skipped', execution_id: null, exit_code: null, message: CANCELLED_SKIP, timestamp: new Date().toISOString() }]);
      return true;
    }
    let executionId: string;
    try {
      executionId = await this.workerManager.execute(jobId, this.runEnv(runId, run));
    } catch (err) {
      if (this.stopping) return false;
      // worker-manager away, or answering 503 (its NATS down): it did nothing, and neither does the run's creation
      if (failIfUnreachable && err instanceof ServiceUnavailableError) throw err;
      if (failIfUnreachable && requestNotTaken(err)) throw new ServiceUnavailableError((err as Error).message);
      // a later job waits for worker-manager instead; anything else (a 4xx, a time-out: it may have acted) fails it
      if (requestNotTaken(err)) return this.waitForWorkerManager(runId, run.pipeline_id, jobId, err as Error);
      const message = `could not start: ${err instanceof HttpError ? err.message : String(err)}`;
      this.logger.warn({ err, run_id: runId, job_id: jobId }, 'starting a pipeline job failed');
      const name = await runs.updateRunJob(this.db, runId, jobId, { status: 'failed', message }, 'starting');
      if (name !== null) this.publishJob(runId, run.pipeline_id, jobId, name, 'failed', message);
      return true;
    }
    return this.recordStart(runId, run.pipeline_id, jobId, executionId);
  }

  /**
   * worker-manager did not take the job's start (or could not say whether it has it): the job stays
   * `starting`, saying why, for the sweep to try again; it fails once worker-manager has been
   * unavailable for startWaitMs. True when it failed (the run must be derived again).
   */
  private async waitForWorkerManager(runId: string, pipelineId: string, jobId: string, err: Error): Promise<boolean> {
    const log = this.logger.child({ run_id: runId, job_id: jobId });
    const r = await runs.startUnavailable(this.db, runId, jobId, this.startWaitMs, {
      waiting: `worker-manager unavailable, retrying every ${duration(this.sweepMs)} for up to ${duration(this.startWaitMs)}: ${err.message}`,
      failed: `could not start: worker-manager was unavailable for over ${duration(this.startWaitMs)} (HODEI_PIPELINE_START_WAIT_MS): ${err.message}`,
    });
    if (!r) return false;
    if (r.status === 'failed') {
      log.warn({ err }, 'worker-manager stayed unavailable: the pipeline job failed');
      this.publishJob(runId, pipelineId, jobId, r.name, 'failed', r.message);
      return true;
    }
    if (r.first) {
      log.warn({ err, retry_for_ms: this.startWaitMs }, 'worker-manager unavailable: the pipeline job waits for it');
      this.publishJob(runId, pipelineId, jobId, r.name, 'starting', r.message);
    }
    return false;
  }

  private publishJob(runId: string, pipelineId: string, jobId: string, name: string, status: 'starting' | 'failed', message: string): void {
    this.publish([{ type: 'job', run_id: runId, pipeline_id: pipelineId, job_id: jobId, name, status, execution_id: null, exit_code: null, message, timestamp: new Date().toISOString() }]);
  }

  private async recordStart(runId: string, pipelineId: string, jobId: string, executionId: string): Promise<boolean> {
    // a job no longer starting (its run derived on, from an execution event that came first) has no queued to announce
    const name = await runs.updateRunJob(this.db, runId, jobId, { status: 'queued', execution_id: executionId, message: null }, 'starting');
    if (name !== null) {
      this.publish([{ type: 'job', run_id: runId, pipeline_id: pipelineId, job_id: jobId, name, status: 'queued', execution_id: executionId, timestamp: new Date().toISOString() }]);
    }
    // a cancel that came while this start was on its way did not see the execution
    const after = await runs.afterStart(this.db, runId, executionId);
    if (after.cancel_requested) await this.workerManager.cancel(executionId).catch((err: unknown) => this.logger.warn({ err, run_id: runId }, 'cancelling a just-started job failed'));
    return after.execution_status !== null && after.execution_status !== 'queued';
  }

  /** A start left behind by a stopped orchestrator: follows the execution it made, or starts the job. */
  private async takeOver(claim: runs.StaleClaim): Promise<void> {
    const log = this.logger.child({ run_id: claim.run_id, job_id: claim.job_id });
    let existing: string | null;
    try {
      existing = await this.workerManager.findExecutionWithEnv(claim.job_id, RUN_ID_ENV, claim.run_id);
    } catch (err) {
      // whether it started is not known: nothing starts now
      if (this.stopping) return;
      await this.waitForWorkerManager(claim.run_id, claim.pipeline_id, claim.job_id, err as Error);
      return;
    }
    if (existing) {
      log.info({ execution_id: existing }, 'a start left behind had reached worker-manager: following its execution');
      await this.recordStart(claim.run_id, claim.pipeline_id, claim.job_id, existing);
    } else {
      log.info('a start left behind never reached worker-manager: starting it now');
      await this.startJob(claim.run_id, claim, claim.job_id, false);
    }
  }

  /** Running runs brought up to date (at start), and starts left behind by a stopped orchestrator taken over. */
  private async sweep(all: boolean): Promise<void> {
    try {
      if (all) {
        for (const runId of await runs.runningRunIds(this.db)) await this.sync(runId);
        // a cancel cut short (the orchestrator stopped, or worker-manager failed, mid-way) is finished now
        await eachLimited(await runs.executionsToCancel(this.db), START_CONCURRENCY, async (e) => {
          if (await this.workerManager.cancel(e.execution_id)) this.logger.info(e, 'cancelling an execution of a cancelled run, left running by an earlier cancel');
        });
      }
      const claims = await runs.claimStaleStarts(this.db, this.staleStartMs);
      for (const runId of new Set(claims.map((c) => c.run_id))) {
        const ofRun = new Map(claims.filter((c) => c.run_id === runId).map((c) => [c.job_id, c]));
        await this.withFreshClaims(runId, [...ofRun.keys()], (jobId) => this.takeOver(ofRun.get(jobId)!));
        await this.sync(runId);
      }
      this.sweepFailures.worked();
    } catch (err) {
      this.sweepFailures.failed(err);
    } finally {
      this.sweeping = null;
    }
  }
}
