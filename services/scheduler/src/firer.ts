// Cron firing: a timer set for the earliest due schedule (not a polling loop). Each firing is one
// schedule_runs row under UNIQUE (schedule_id, scheduled_at); only the process whose insert won
// asks worker-manager (or the orchestrator, for a pipeline) to run it, so replicas never double-fire.
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeJson, FailureLog, HttpError, requestNotTaken, SpanStatusCode, untraced, withSpan, type Bus, type Logger, type ServiceClient, type Span } from '@hodei/platform';
import { isFinalStatus, retryDue, type Execution, type ScheduleFiredEvent } from '@hodei/types';
import type { Counter, Histogram } from 'prom-client';
import { nextCronRun } from './cron.js';
import type { DueSchedule, ScheduleStore } from './store/schedules.js';

type FiringTarget = Pick<DueSchedule, 'id' | 'job_id' | 'pipeline_id' | 'overlap_policy'>;

/** Later than this and the firing counts as missed (downtime): misfire_policy decides. */
const MISFIRE_GRACE_MS = 1000;
/** Longest sleep: schedules created through another replica are seen within this. */
const MAX_SLEEP_MS = 1000;
/** A due schedule that another replica is firing right now: look again shortly. */
const BUSY_RETRY_MS = 10;
/**
 * A firing's start that worker-manager (or the orchestrator) surely did not take (not running,
 * restarting: connection refused or 503) is asked again this often, for this long, so that a
 * restart of theirs loses no firing. Not a manual run: its caller hears at once.
 */
const START_RETRY_EVERY_MS = 1000;
const START_RETRY_FOR_MS = 30_000;
/**
 * Firings whose start (the requests to worker-manager or the orchestrator) is under way at once;
 * the others wait their turn. 300 schedules due the same second, all sent at once, made
 * worker-manager answer most of them after the 5 s time-out: recorded failed, though they ran.
 */
const MAX_STARTS_AT_ONCE = 8;

/** Runs at most `max` pieces of work at once, the others in the order they came. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active += 1;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active -= 1;
    }
  }
}

interface Started {
  outcome: ScheduleFiredEvent['outcome'];
  executionId: string | null;
  pipelineRunId: string | null;
  message: string | null;
}

export interface FirerMetrics {
  lateness: Histogram;
  firings: Counter<'outcome'>;
}

export class Firer {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private current: Promise<void> | undefined;
  /** Cuts short the wait between two tries of a firing's start. */
  private readonly stopping = new AbortController();
  /** The last pass over the due schedules: a firing that fell due during it waited for it (a slow
   *  database) while this scheduler ran; it is late, not missed. */
  private lastPass: { start: number; end: number } | undefined;
  /**
   * Firings being started (worker-manager or the orchestrator slow to answer, or asked again while
   * they refuse), by schedule. Passes do not wait for them, so other schedules fire on time; the
   * schedule's own next firing waits for its start to end.
   */
  private readonly starting = new Map<string, Promise<void>>();
  /** When each schedule's last start ran: a firing of it that fell due meanwhile waited for it; it is late, not missed. */
  private readonly lastStart = new Map<string, { start: number; end: number }>();
  /** The launches of each schedule here, one after another: each is recorded before the next one
   *  looks for an active run, so that runs asked for at once do not all find none (overlap_policy). */
  private readonly launching = new Map<string, Promise<unknown>>();
  private readonly starts = new Limiter(MAX_STARTS_AT_ONCE);
  private readonly failures: FailureLog;

  constructor(
    private readonly store: ScheduleStore,
    private readonly workerManager: ServiceClient,
    private readonly orchestrator: ServiceClient,
    private readonly bus: Bus,
    private readonly metrics: FirerMetrics,
    private readonly logger: Logger,
  ) {
    this.failures = new FailureLog(logger, 'firing schedules');
  }

  /** Fires what is due and re-arms the timer; called on start, on every schedule change and by the timer. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    // kicked by a request (a schedule created or changed): its firings are not part of that request's trace
    this.current = untraced(() => this.loop());
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.tick();
          this.failures.worked();
        } catch (err) {
          this.failures.failed(err);
          this.arm(MAX_SLEEP_MS);
        }
      } while (this.again && !this.stopped);
    } finally {
      this.running = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    clearTimeout(this.timer);
    await this.current;
    await Promise.allSettled(this.starting.values());
  }

  private arm(delayMs: number): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => this.kick(), delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    const now = new Date();
    const busy = this.lastPass;
    const due = await this.store.due(now, [...this.starting.keys()]);
    await Promise.all(due.map((d) => this.fire(d, now, busy)));
    this.lastPass = { start: now.getTime(), end: Date.now() };
    // a schedule whose start is under way is looked at again when it ends
    const at = await this.store.earliest([...this.starting.keys()]);
    if (!at) return this.arm(MAX_SLEEP_MS);
    const wait = at.getTime() - Date.now();
    this.arm(wait <= 0 ? BUSY_RETRY_MS : Math.min(wait, MAX_SLEEP_MS));
  }

  private async fire(d: DueSchedule, now: Date, busy: { start: number; end: number } | undefined): Promise<void> {
    const log = this.logger.child({ schedule_id: d.id });
    const scheduledAt = d.next_run_at;
    const lateMs = now.getTime() - scheduledAt.getTime();
    const next = d.cron ? nextCronRun(d.cron, d.timezone, new Date(Math.max(now.getTime(), scheduledAt.getTime()))) : null;

    const paused = d.resumed_at !== null && d.resumed_at > scheduledAt;
    const during = (span: { start: number; end: number } | undefined) =>
      span !== undefined && scheduledAt.getTime() >= span.start && scheduledAt.getTime() < span.end;
    const ownStart = this.lastStart.get(d.id);
    this.lastStart.delete(d.id);
    const heldUp = during(busy) || during(ownStart);
    if (lateMs > MISFIRE_GRACE_MS && d.misfire_policy === 'skip' && (paused || !heldUp)) {
      // missed while no scheduler ran, or while it was paused: skip it (and everything else missed),
      // resume on time. The firing is recorded skipped, so that a one-shot schedule completed without
      // a run says why; before the schedule advances, so that it is never read completed beside a
      // run still pending (nor left so by a crash between the two).
      const skippedId = await this.store.claimRun(d.id, scheduledAt);
      if (skippedId) {
        const why = paused ? 'the schedule was paused' : 'no scheduler was running';
        const message = `missed: ${why} at ${scheduledAt.toISOString()} (misfire_policy skip)`;
        await this.store.finishRun(skippedId, 'skipped', { execution_id: null, pipeline_run_id: null }, message);
        this.metrics.firings.inc({ outcome: 'missed' });
        log.warn({ scheduled_at: scheduledAt.toISOString(), late_ms: lateMs }, 'missed firing skipped (misfire_policy skip)');
      }
      await this.store.advance(d.id, scheduledAt, next, null);
      return;
    }
    const runId = await this.store.claimRun(d.id, scheduledAt);
    // run_once after downtime: this one catch-up firing, then straight to the next one after now
    await this.store.advance(d.id, scheduledAt, next, runId ? scheduledAt : null);
    if (!runId) return; // another replica inserted the row: it fires
    this.metrics.lateness.observe(Math.max(0, Date.now() - scheduledAt.getTime()) / 1000);
    const attributes = { 'hodei.schedule_id': d.id, 'hodei.scheduled_at': scheduledAt.toISOString() };
    const began = Date.now();
    const fire = async (span: Span) => {
      const { outcome, message } = await this.start(d, runId, scheduledAt, log, START_RETRY_FOR_MS);
      span.setAttribute('hodei.outcome', outcome);
      if (outcome === 'failed') span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? undefined });
    };
    const starting = withSpan('scheduler fire', fire, { parent: null, attributes })
      .catch((err: unknown) => log.error({ err, run_id: runId }, 'recording a firing failed'))
      .finally(() => {
        this.starting.delete(d.id);
        if (next && next.getTime() < Date.now()) this.lastStart.set(d.id, { start: began, end: Date.now() });
        this.kick();
      });
    this.starting.set(d.id, starting);
  }

  /** A firing now, beside the schedule's own (POST /schedules/:id/run), under its overlap_policy; its run's id. */
  async runNow(d: FiringTarget): Promise<string> {
    // claimed in turn with the launches: runs asked for at once launch in the order of their scheduled_at
    const run = await this.oneAtATime(d.id, () => this.store.claimManualRun(d.id));
    await this.start(d, run.id, run.scheduled_at, this.logger.child({ schedule_id: d.id, manual: true }));
    return run.id;
  }

  /** Starts what a claimed firing runs, unless overlap_policy forbids it, then records and announces the outcome. */
  private async start(d: FiringTarget, runId: string, scheduledAt: Date, log: Logger, retryForMs = 0): Promise<Started> {
    let started: Started;
    const giveUpAt = Date.now() + retryForMs;
    for (let tries = 1; ; tries++) {
      try {
        started = await this.oneAtATime(d.id, async () => {
          const s = await this.starts.run(() => this.launch(d, log));
          await this.record(runId, s);
          return s;
        });
        break;
      } catch (err) {
        if (requestNotTaken(err) && !this.stopped && Date.now() < giveUpAt) {
          if (tries === 1) log.warn({ reason: (err as Error).message }, `the firing could not start; asking again every ${START_RETRY_EVERY_MS / 1000} s for up to ${retryForMs / 1000} s`);
          await sleep(START_RETRY_EVERY_MS, undefined, { signal: this.stopping.signal }).catch(() => undefined);
          continue;
        }
        started = { outcome: 'failed', executionId: null, pipelineRunId: null, message: (err as Error).message };
        if (err instanceof HttpError && err.status === 404) {
          // the job or pipeline was deleted: every later firing would fail the same way
          await this.store.pause(d.id);
          started.message = `${started.message}; schedule paused`;
          log.warn({ err }, 'the schedule runs a job or pipeline that no longer exists: paused');
        } else {
          // another service's answer says it all: a stack only for the unexpected
          log.error(err instanceof HttpError ? { reason: started.message, tries } : { err, tries }, 'firing failed');
        }
        await this.record(runId, started);
        break;
      }
    }
    const { outcome, executionId, pipelineRunId, message } = started;
    this.metrics.firings.inc({ outcome });
    const event: ScheduleFiredEvent = {
      schedule_id: d.id,
      run_id: runId,
      job_id: d.job_id,
      pipeline_id: d.pipeline_id,
      scheduled_at: scheduledAt.toISOString(),
      fired_at: new Date().toISOString(),
      execution_id: executionId,
      outcome,
      message,
    };
    await this.bus.js.publish(this.bus.subjects.scheduleFired, encodeJson(event)).catch((err: unknown) => {
      log.warn({ err }, 'could not publish schedule.fired');
    });
    log.debug({ scheduled_at: event.scheduled_at, outcome, execution_id: executionId, pipeline_run_id: pipelineRunId }, 'schedule fired');
    return started;
  }

  private record(runId: string, s: Started): Promise<void> {
    return this.store.finishRun(runId, s.outcome, { execution_id: s.executionId, pipeline_run_id: s.pipelineRunId }, s.message);
  }

  /** Runs `work` once the schedule's launches before it here have ended. */
  private oneAtATime<T>(scheduleId: string, work: () => Promise<T>): Promise<T> {
    const mine = (this.launching.get(scheduleId) ?? Promise.resolve()).then(work);
    const settled = mine.catch(() => undefined);
    this.launching.set(scheduleId, settled);
    void settled.then(() => {
      if (this.launching.get(scheduleId) === settled) this.launching.delete(scheduleId);
    });
    return mine;
  }

  /** What the firing starts (or why overlap_policy starts nothing); throws what worker-manager or the orchestrator answered. */
  private async launch(d: FiringTarget, log: Logger): Promise<Started> {
    const active = d.overlap_policy === 'allow' ? null : await this.previousStillActive(d);
    if (active && d.overlap_policy === 'forbid') {
      return { outcome: 'skipped', executionId: null, pipelineRunId: null, message: `previous run ${active.id} is still active (overlap_policy forbid)` };
    }
    let replaced: string | null = null;
    if (active) {
      await active.cancel().catch((err: unknown) => {
        log.warn({ err, previous: active.id }, 'could not cancel the previous run (overlap_policy replace)');
      });
      replaced = `replaced ${active.id}`;
    }
    if (d.job_id) {
      const ex = await this.workerManager.send<{ id: string }>('POST', '/api/v1/execute', { job_id: d.job_id });
      return { outcome: 'fired', executionId: ex.id, pipelineRunId: null, message: replaced };
    }
    const run = await this.orchestrator.send<{ id: string }>('POST', `/api/v1/pipelines/${d.pipeline_id}/runs`, {});
    return { outcome: 'fired', executionId: null, pipelineRunId: run.id, message: `pipeline run ${run.id}${replaced ? `; ${replaced}` : ''}` };
  }

  /** What an earlier firing started and is still going: the job's execution, or the pipeline's run (the orchestrator says whether it runs). */
  private async previousStillActive(d: FiringTarget): Promise<{ id: string; cancel: () => Promise<unknown> } | null> {
    if (d.job_id) {
      const last = await this.store.lastExecution(d.id);
      // a last attempt over needs no asking worker-manager about retries (a burst of firings asked twice each)
      const id = last && (last.done ? (last.last_attempt ? null : await this.attemptToCome(last.execution_id)) : last.execution_id);
      return id ? { id, cancel: () => this.workerManager.send('POST', `/api/v1/executions/${id}/cancel`) } : null;
    }
    const id = await this.store.lastPipelineRun(d.id);
    if (!id) return null;
    const run = await this.orchestrator.find<{ status: string }>(`/api/v1/pipeline-runs/${id}`);
    return run?.status === 'running' ? { id, cancel: () => this.orchestrator.send('POST', `/api/v1/pipeline-runs/${id}/cancel`) } : null;
  }

  /**
   * An execution that ended here may go on as retries (worker-manager's, retry_of): the attempt
   * queued, waiting out its back-off or running, or the ended one when its retry is not recorded yet.
   */
  private async attemptToCome(executionId: string): Promise<string | null> {
    for (let id = executionId; ; ) {
      const [retry] = (await this.workerManager.find<Execution[]>(`/api/v1/executions?retry_of=${id}`)) ?? [];
      if (retry && !isFinalStatus(retry.status)) return retry.id;
      if (retry) {
        id = retry.id;
        continue;
      }
      const e = await this.workerManager.find<Execution>(`/api/v1/executions/${id}`);
      if (!e) return null;
      return !isFinalStatus(e.status) || retryDue(e.status, e.attempt, e.spec.max_retries) ? id : null;
    }
  }
}
