// The worker agent: registers with the scheduler, beats, takes assignments and control messages
// over NATS, and runs each assignment as an Execution within its slots.
import os from 'node:os';
import { jetstream } from '@nats-io/jetstream';
import { NoRespondersError, RequestError, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Assignment, HeartbeatReply, LogBacklog, subjects as makeSubjects, WorkerControl, type AssignmentAck, type WorkerHeartbeat, type WorkerIdentity } from '@hodei/types';
import { createLogger, decodeJson, encodeJson, RecentSet, silenceCheckMs, type Logger } from '@hodei/platform';
import { resolveWorkerConfig, type WorkerConfig, type WorkerOptions } from './config.js';
import { connectNats } from './connect.js';
import { Execution } from './execution.js';
import { Reaper } from './reaper.js';
import { identity, waitForOwnId } from './sole.js';
import { createSpawner, type Spawner } from './spawn.js';
import type { WorkerMetrics } from './metrics.js';
import { MAX_LINE_BYTES } from './lines.js';
import { LEFTOVER_SWEEP_MS, removeLeftovers } from './leftovers.js';
import { PublishOutage } from './outage.js';
import { delay, LogShipper, MIN_MAX_PAYLOAD } from './shipper.js';

export interface StartWorkerOptions extends WorkerOptions {
  logger?: Logger;
  /** Counted into when given (the standalone agent's /metrics). */
  metrics?: WorkerMetrics;
  /** Aborted while NATS has not answered yet, the start is given up (NatsWaitAborted); later, it changes nothing. */
  signal?: AbortSignal;
}

export interface WorkerHandle {
  id: string;
  config: WorkerConfig;
  /** Graceful (default): drain. `force`: kill every running job (reported `cancelled`), then exit. */
  stop(options?: { force?: boolean }): Promise<void>;
  /** No new work; running work finishes; then the worker stops. */
  drain(): Promise<void>;
  /** Resolves once the worker has stopped. */
  done: Promise<void>;
  /** Why the worker stopped on its own, if it did (the scheduler refused its registration). */
  failure(): string | undefined;
  /** Ids of the executions running now. */
  running(): string[];
}

export async function startWorker(options: StartWorkerOptions = {}): Promise<WorkerHandle> {
  const { logger: givenLogger, metrics, signal, ...rest } = options;
  const config = resolveWorkerConfig(rest);
  const logger = (givenLogger ?? createLogger('worker', config.logLevel)).child({ worker_id: config.id });
  const nc = await connectNats(config.natsUrl, `hodei-worker-${config.id}`, logger, signal);
  const maxPayload = nc.info?.max_payload;
  if (maxPayload !== undefined && maxPayload < MIN_MAX_PAYLOAD) {
    await nc.close();
    throw new Error(
      `NATS at ${config.natsUrl} takes messages of at most ${maxPayload} bytes (max_payload); a worker needs ${MIN_MAX_PAYLOAD} to ship a ${MAX_LINE_BYTES}-byte log line: raise max_payload in the server's configuration (default 1 MiB)`,
    );
  }
  try {
    await waitForOwnId(nc, makeSubjects(config.natsPrefix).control(config.id), config.id, logger, signal);
  } catch (err) {
    await nc.close();
    throw err;
  }
  const agent = new WorkerAgent(config, nc, await createSpawner(config.spawner, logger, { killGraceMs: config.killGraceMs }), logger, metrics);
  await agent.begin();
  return {
    id: config.id,
    config,
    stop: (o) => agent.stop(o?.force ?? false),
    drain: () => agent.drain(),
    done: agent.done,
    failure: () => agent.failure,
    running: () => [...agent.executions.keys()],
  };
}

const ENDED = 'execution already ended; its final status is on its way';
/** Executions that ended here remembered (the latest): an assignment of one sent again is not run again. */
const ENDED_REMEMBERED = 10_000;

class WorkerAgent {
  /** Executions until their final status is published. */
  readonly executions = new Map<string, Execution>();
  /** Executions holding a slot: the process runs or its logs are still being shipped. */
  private readonly busy = new Set<string>();
  private readonly ended = new RecentSet<string>(ENDED_REMEMBERED);
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly subjects;
  private readonly js;
  private readonly reaper: Reaper;
  private readonly logs: LogShipper;
  private readonly outage: PublishOutage;
  private draining = false;
  private shuttingDown = false;
  private subs: Subscription[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** When the server last answered (performance.now()): a heartbeat's round trip. */
  private lastContact = performance.now();
  private cutOff = false;
  private cutOffTimer: NodeJS.Timeout | undefined;
  private leftoverTimer: NodeJS.Timeout | undefined;
  private readonly abortRegistration = new AbortController();
  private registered = false;
  private registering = false;
  /** When the last registration succeeded (performance.now()): older heartbeats' answers are stale. */
  private registeredAt = -Infinity;
  /** Since when (performance.now()) heartbeats find no scheduler listening; warned once. */
  private unheardSince: number | undefined;
  private unheardWarned = false;
  failure: string | undefined;

  constructor(
    private readonly config: WorkerConfig,
    private readonly nc: NatsConnection,
    private readonly spawner: Spawner,
    private readonly logger: Logger,
    private readonly metrics?: WorkerMetrics,
  ) {
    this.subjects = makeSubjects(config.natsPrefix);
    this.js = jetstream(nc);
    this.reaper = new Reaper(config.killGraceMs, logger, () => spawner.subreaper);
    this.outage = new PublishOutage(logger);
    this.logs = new LogShipper(this.js, this.subjects.logs(config.id), config.id, logger, () => this.maxPayload(), this.outage);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
  }

  private maxPayload(): number {
    return this.nc.info?.max_payload ?? 1024 * 1024;
  }

  /** Resolves once the subscriptions are live on the server: the worker can be assigned work. */
  async begin(): Promise<void> {
    this.subs.push(this.nc.subscribe(this.subjects.assign(this.config.id), { callback: (err, msg) => { if (!err) this.onAssign(msg); } }));
    this.subs.push(this.nc.subscribe(this.subjects.control(this.config.id), { callback: (err, msg) => { if (!err) this.onControl(msg); } }));
    this.subs.push(this.nc.subscribe(this.subjects.cancelAnywhere, { callback: (err, msg) => { if (!err) this.onCancelAnywhere(msg); } }));
    this.subs.push(this.nc.subscribe(this.subjects.logsBacklog, { callback: (err, msg) => { if (!err) this.onLogBacklog(msg); } }));
    this.heartbeat();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.config.heartbeatIntervalMs);
    this.cutOffTimer = setInterval(() => this.killIfCutOff(), silenceCheckMs(this.config.natsLostTimeoutMs));
    if (this.config.registerWithScheduler) void this.register();
    void this.watchConnection();
    await this.nc.flush();
    this.logger.info({ slots: this.config.capacity.slots, labels: this.config.labels }, 'worker started');
    this.removeLeftovers();
    this.leftoverTimer = setInterval(() => this.removeLeftovers(), LEFTOVER_SWEEP_MS).unref();
  }

  private removeLeftovers(): void {
    const removed = removeLeftovers(this.config.tmpDir, (id) => this.executions.has(id));
    if (removed.length) {
      const n = removed.length;
      this.logger.info({ dir: this.config.tmpDir, removed }, `removed ${n} folder${n === 1 ? '' : 's'} left by executions whose agent was killed`);
    }
  }

  private onAssign(msg: Msg): void {
    let ack: AssignmentAck;
    let toStart: Execution | undefined;
    try {
      const parsed = Assignment.safeParse(decodeJson(msg.data));
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        ack = { accepted: false, reason: `invalid assignment: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim() };
      } else if (this.executions.has(parsed.data.execution_id) || this.ended.has(parsed.data.execution_id)) {
        // a re-sent assignment (its first answer late) of one it runs or ran: never run it twice
        ack = { accepted: true };
      } else if (this.draining || this.shuttingDown) {
        ack = { accepted: false, reason: 'worker is draining' };
      } else if (this.busy.size >= this.config.capacity.slots) {
        ack = { accepted: false, reason: `no free slot (${this.busy.size}/${this.config.capacity.slots} busy)` };
      } else {
        toStart = new Execution(
          {
            js: this.js,
            subjects: this.subjects,
            workerId: this.config.id,
            baseEnv: this.config.baseEnv,
            tmpDir: this.config.tmpDir,
            runningAfterMs: this.config.runningAfterMs,
            logs: this.logs,
            outage: this.outage,
            reaper: this.reaper,
            spawner: this.spawner,
            logger: this.logger,
            onSlotFree: (id) => this.busy.delete(id),
            maxPayload: () => this.maxPayload(),
          },
          parsed.data,
        );
        this.executions.set(toStart.id, toStart);
        this.busy.add(toStart.id);
        this.reaper.keepWarm(true);
        ack = { accepted: true };
      }
    } catch (err) {
      ack = { accepted: false, reason: `invalid assignment: ${(err as Error).message}` };
    }
    msg.respond(encodeJson(ack));
    // a re-sent assignment of an execution this worker already runs was counted when it first came
    if (toStart || !ack.accepted) this.metrics?.assignments.inc({ outcome: toStart ? 'accepted' : 'refused' });
    if (!toStart) {
      this.logger.debug({ reason: ack.reason }, 'assignment refused');
      return;
    }
    const execution = toStart;
    // The client flushes the ack in a microtask queued by respond(); spawning in the next one
    // sends the ack before the fork rather than after it.
    queueMicrotask(() => execution.start());
    void execution.finished.then((outcome) => {
      this.metrics?.finished.inc({ status: outcome.status });
      this.busy.delete(execution.id);
      this.executions.delete(execution.id);
      this.ended.add(execution.id);
      if (this.executions.size === 0) this.reaper.keepWarm(false);
      if (this.draining && this.executions.size === 0) void this.shutdown();
    });
  }

  private onLogBacklog(msg: Msg): void {
    let parsed;
    try {
      parsed = LogBacklog.safeParse(decodeJson(msg.data));
    } catch {
      return; // not JSON: not from worker-manager
    }
    if (parsed.success) this.logs.setBacklog(parsed.data.behind);
  }

  private onControl(msg: Msg): void {
    let reply: { ok: boolean; reason?: string } | WorkerIdentity;
    let after: (() => void) | undefined;
    try {
      const parsed = WorkerControl.safeParse(decodeJson(msg.data));
      if (!parsed.success) {
        reply = { ok: false, reason: `invalid control message: ${parsed.error.issues[0]?.message ?? ''}` };
      } else {
        const c = parsed.data;
        if (c.action === 'cancel') {
          const execution = this.executions.get(c.execution_id);
          if (!execution) reply = { ok: false, reason: 'execution is not running on this worker' };
          else if (execution.kill(c.reason)) reply = { ok: true };
          else reply = { ok: false, reason: ENDED };
        } else if (c.action === 'identify') {
          reply = identity(this.draining || this.shuttingDown);
        } else if (c.action === 'drain' || (c.action === 'stop' && !c.force)) {
          reply = { ok: true };
          after = () => void this.drain();
        } else {
          reply = { ok: true };
          after = () => void this.stop(true);
        }
      }
    } catch (err) {
      reply = { ok: false, reason: `invalid control message: ${(err as Error).message}` };
    }
    if (msg.reply) msg.respond(encodeJson(reply));
    after?.();
  }

  /** A cancel sent to every worker: only the one holding the execution acts, and answers (one that
   *  ended and whose final status is not published yet: not ok, so it is not taken for never started). */
  private onCancelAnywhere(msg: Msg): void {
    let parsed;
    try {
      parsed = WorkerControl.safeParse(decodeJson(msg.data));
    } catch {
      return; // not JSON: nothing to cancel
    }
    if (!parsed.success || parsed.data.action !== 'cancel') return;
    const execution = this.executions.get(parsed.data.execution_id);
    if (!execution || !msg.reply) return;
    msg.respond(encodeJson(execution.kill(parsed.data.reason) ? { ok: true } : { ok: false, reason: ENDED }));
  }

  drain(): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.logger.info({ running: this.executions.size }, 'draining: no new work, waiting for running executions');
      this.heartbeat();
      if (this.executions.size === 0) void this.shutdown();
    }
    return this.done;
  }

  async stop(force: boolean): Promise<void> {
    if (!force) return this.drain();
    this.draining = true;
    this.logger.info({ running: this.executions.size }, 'force stop: cancelling running executions');
    const running = [...this.executions.values()];
    for (const execution of running) execution.kill('stopped');
    await Promise.all(running.map((e) => e.finished));
    await this.shutdown();
  }

  private heartbeat(): void {
    if (this.shuttingDown || this.nc.isClosed()) return;
    const beat: WorkerHeartbeat = {
      worker_id: this.config.id,
      status: this.draining ? 'draining' : 'online',
      // not those whose process exited: the scheduler may record their final status before this
      // beat, and would answer that they must not run (written off)
      running_executions: [...this.executions.values()].filter((e) => e.running).map((e) => e.id),
      timestamp: new Date().toISOString(),
    };
    const sentAt = performance.now();
    try {
      // a request: the scheduler answers what it thinks of this worker (no scheduler: no answer)
      this.nc.request(this.subjects.heartbeat(this.config.id), encodeJson(beat), { timeout: this.config.natsLostTimeoutMs }).then(
        (msg) => this.onHeartbeatReply(msg, sentAt),
        (err: unknown) => this.onHeartbeatUnheard(err),
      );
      this.nc.flush().then(() => (this.lastContact = performance.now()), () => undefined);
    } catch (err) {
      this.logger.warn({ err }, 'heartbeat publish failed');
    }
  }

  /** The scheduler forgot this worker: it registers again. It deregistered it (stopped; the drain
   *  message missed): it drains. It recorded executions running here over (it counted the worker
   *  gone and published them lost) or placed them on another worker: they are killed. */
  private onHeartbeatReply(msg: Msg, sentAt: number): void {
    if (this.unheardWarned) this.logger.info('a scheduler answers the heartbeats again');
    this.unheardSince = undefined;
    this.unheardWarned = false;
    let reply: HeartbeatReply;
    try {
      const parsed = HeartbeatReply.safeParse(decodeJson(msg.data));
      if (!parsed.success) return;
      reply = parsed.data;
    } catch {
      return; // not JSON: not from a scheduler
    }
    const killed = reply.written_off.filter((id) => this.executions.get(id)?.kill('written_off'));
    if (killed.length) this.logger.error({ executions: killed }, 'the scheduler recorded executions still running here over or placed them on another worker: killing them');
    // an answer to a beat sent before the last registration describes the entry it replaced
    if (this.registering || sentAt < this.registeredAt || this.draining || this.shuttingDown) return;
    if (reply.status === 'stopped') {
      this.logger.warn({ scheduler: this.config.schedulerUrl }, 'the scheduler deregistered this worker (stopped): it gets no more work, draining');
      void this.drain();
      return;
    }
    if (reply.status !== 'unknown' || !this.config.registerWithScheduler) return;
    this.logger.warn({ scheduler: this.config.schedulerUrl }, 'the scheduler does not know this worker (forgotten, or its database was reset): registering again');
    void this.register();
  }

  /** Registered over HTTP, yet no scheduler listens for this worker's heartbeats on NATS (a wrong
   *  prefix, or the scheduler down): the scheduler counts it offline and sends it nothing. */
  private onHeartbeatUnheard(err: unknown): void {
    const noResponders = err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders());
    if (!noResponders || !this.registered || this.shuttingDown) return;
    const now = performance.now();
    this.unheardSince ??= now;
    if (this.unheardWarned || now - this.unheardSince < this.config.natsLostTimeoutMs) return;
    this.unheardWarned = true;
    this.logger.warn(
      { nats_prefix: this.config.natsPrefix, subject: this.subjects.heartbeat(this.config.id) },
      `no scheduler listens for this worker's heartbeats under the NATS prefix '${this.config.natsPrefix}', so it counts this worker offline and sends it no work: is HODEI_NATS_PREFIX (hodei worker --prefix) the services' one, and is the scheduler up?`,
    );
  }

  /** A network gone silent shows no disconnect until the client's pings time out (minutes), while
   *  the scheduler counts this worker gone the timeout after the last heartbeat it got: silent
   *  that long since the server last answered, the jobs are killed as on a disconnect. */
  private killIfCutOff(): void {
    const silentMs = performance.now() - this.lastContact;
    if (silentMs < this.config.natsLostTimeoutMs) {
      this.cutOff = false;
      return;
    }
    if (this.cutOff) return;
    this.cutOff = true;
    const running = [...this.executions.values()].filter((e) => e.kill('lost'));
    if (running.length) this.logger.error({ running: running.map((e) => e.id), silent_ms: Math.round(silentMs) }, 'NATS server silent or unreachable: killing running jobs');
  }

  private async shutdown(): Promise<void> {
    if (this.shuttingDown) return this.done;
    this.shuttingDown = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.cutOffTimer);
    clearInterval(this.leftoverTimer);
    this.abortRegistration.abort();
    // Drained, not just unsubscribed: an assignment the server sent before it saw the unsubscribe is
    // still answered (refused), where dropped unanswered the scheduler would count it taken and lost.
    for (const sub of this.subs) sub.drain().catch(() => undefined);
    // Executions still running here means a forced path without NATS: do not leave processes behind.
    for (const execution of this.executions.values()) {
      execution.kill('stopped');
      execution.abort();
    }
    this.logs.abort();
    this.reaper.killPendingNow();
    await this.reaper.close();
    if (this.registered) await this.deregister();
    await this.spawner.close();
    try {
      await this.nc.drain();
    } catch (err) {
      this.logger.warn({ err }, 'closing the NATS connection failed');
    }
    this.logger.info('worker stopped');
    this.resolveDone();
  }

  /** Cut off from NATS past the heartbeat timeout, this worker counts as gone: its jobs may be
   *  placed elsewhere, so it kills them rather than let one job run twice at once. */
  /** Disconnects are logged; the jobs of a worker cut off too long are killed by killIfCutOff,
   *  which counts from the server's last answer (a disconnect's time or earlier). */
  private async watchConnection(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') {
        this.logger.warn({ nats: s.type }, 'nats disconnected');
      } else if (s.type === 'reconnect') {
        this.logger.warn({ nats: s.type }, 'nats reconnected');
        this.heartbeat();
      }
    }
  }

  /** Leaving cleanly: the registry marks this worker stopped now rather than after missed beats. */
  private async deregister(): Promise<void> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.config.apiToken) headers.authorization = `Bearer ${this.config.apiToken}`;
    try {
      const res = await fetch(new URL(`/api/v1/workers/${this.config.id}`, this.config.schedulerUrl), {
        method: 'DELETE',
        headers,
        signal: AbortSignal.timeout(2000),
      });
      await res.body?.cancel();
      if (!res.ok && res.status !== 404) this.logger.warn({ status: res.status }, 'the scheduler refused the deregistration');
    } catch (err) {
      this.logger.warn({ err }, 'could not deregister from the scheduler (it will mark this worker offline)');
    }
  }

  /** Registers (again), once at a time. */
  private async register(): Promise<void> {
    this.registering = true;
    try {
      await this.postRegistration();
    } finally {
      this.registering = false;
    }
  }

  /** POST the registry entry until the scheduler answers; logs a failure once per kind of failure. */
  private async postRegistration(): Promise<void> {
    const url = new URL('/api/v1/workers', this.config.schedulerUrl);
    const body = JSON.stringify({
      id: this.config.id,
      type: 'shell',
      name: this.config.name,
      labels: this.config.labels,
      capacity: this.config.capacity,
      host: os.hostname(),
      pid: process.pid,
    });
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.config.apiToken) headers.authorization = `Bearer ${this.config.apiToken}`;
    let lastFailure = '';
    for (let attempt = 0; !this.abortRegistration.signal.aborted; attempt++) {
      let failure: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers,
          body,
          signal: AbortSignal.any([this.abortRegistration.signal, AbortSignal.timeout(5000)]),
        });
        const text = await res.text();
        if (res.ok) {
          this.registered = true;
          this.registeredAt = performance.now();
          this.logger.info({ scheduler: this.config.schedulerUrl }, 'registered with the scheduler');
          return;
        }
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
          // no work ever comes to a worker the registry does not know: stop rather than idle for ever
          const other = await otherServiceAt(this.config.schedulerUrl);
          this.failure = other
            ? `${this.config.schedulerUrl} is the ${other}, not the scheduler: point HODEI_SCHEDULER_URL (hodei worker --scheduler) at the scheduler (port 8081 by default)`
            : registrationRefusal(res.status, text, Boolean(this.config.apiToken));
          this.logger.error({ status: res.status, body: text.slice(0, 500) }, 'the scheduler refused the registration; stopping');
          void this.shutdown();
          return;
        }
        failure = `status ${res.status}`;
      } catch (err) {
        if (this.abortRegistration.signal.aborted) return;
        failure = `unreachable: ${(err as Error).message}`;
      }
      if (failure !== lastFailure) {
        this.logger.warn({ scheduler: this.config.schedulerUrl, failure }, 'registration failed; retrying');
        lastFailure = failure;
      }
      await delay(Math.min(5000, 200 * 2 ** Math.min(attempt, 5)));
    }
  }
}

/** The Hodei service other than the scheduler that answers at `url` (its /health says which), if one does. */
async function otherServiceAt(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(new URL('/health', url), { signal: AbortSignal.timeout(2000) });
    const service = ((await res.json()) as { service?: unknown }).service;
    return typeof service === 'string' && service !== 'scheduler' ? service : undefined;
  } catch {
    return undefined; // not a Hodei service: its refusal says what there is to say
  }
}

/** What a user reads when the scheduler refuses the registration: the problem's detail, and for a
 *  401 the token it is about. */
function registrationRefusal(status: number, body: string, hasToken: boolean): string {
  let detail = body.slice(0, 500);
  try {
    const problem = JSON.parse(body) as { detail?: unknown; title?: unknown };
    if (typeof problem.detail === 'string') detail = problem.detail;
    else if (typeof problem.title === 'string') detail = problem.title;
  } catch {
    // not JSON: the body as it came
  }
  if (status !== 401) return `the scheduler refused the registration (${status}): ${detail}`;
  return hasToken
    ? `the scheduler refused the token (401: ${detail}): HODEI_API_TOKEN (hodei worker --token) must be the services' HODEI_API_TOKEN`
    : `the scheduler needs a token (401: ${detail}): set HODEI_API_TOKEN (hodei worker --token) to the services' HODEI_API_TOKEN`;
}
