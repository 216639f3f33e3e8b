// The worker agent processes this service starts: spawn, watch, drain, stop. A worker's exit is
// noticed at once (its 'exit' event), recorded, and announced on `<p>.worker.<id>.exited`.
// Workers started by an earlier run of this service that still live are adopted at start-up:
// watched through /proc (an exit is noticed within POLL_MS), drained and stopped like the others.
// An agent's output goes to a file this service follows (agent-log.ts), so it outlives us too.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { RequestError, type Subscription } from '@nats-io/nats-core';
import { decodeJson, encodeJson, FailureLog, newId, ServiceUnavailableError, TELEMETRY_REGISTER, telemetryActive, type Logger, type ServiceContext } from '@hodei/platform';
import type { ManagedWorker, WorkerStart } from '@hodei/types';
import { inheritedEnv } from '../config.js';
import type { WmMetrics } from '../metrics.js';
import * as store from '../store/workers.js';
import { settledWithin } from '../wait.js';
import { AgentLogFollower, openAgentLog, removeAgentLog } from './agent-log.js';

export const WORKER_MAIN = fileURLToPath(new URL('../../../../packages/worker/dist/main.js', import.meta.url));

interface Managed {
  id: string;
  pid: number;
  /** null: adopted from an earlier run of this service, not our child */
  child: ChildProcess | null;
  stopping: boolean;
  exited: Promise<void>;
  output: AgentLogFollower;
  /** Stop requests from the other replicas of this service. */
  stops?: Subscription;
}

/** What another replica asks of the one that started a worker: `waitMs` for it to exit; or, with
 *  `probe`, only whether one manages it (a replica starting up adopts only a worker nobody does). */
interface StopRequest {
  force: boolean;
  waitMs: number;
  probe?: boolean;
}

/** How long a replica starting up waits to hear whether another one manages a live worker. */
const PROBE_TIMEOUT_MS = 1000;

const CONTROL_TIMEOUT_MS = 2000;
/** A force stop waits the agent's kill grace plus this for it to kill its jobs, report them
 *  `cancelled` and exit, before it is killed itself. */
const FORCE_MARGIN_MS = 3000;
/** Service shutdown drains workers this long at most before force-stopping them. */
const DRAIN_MS = 5000;
/** What a force stop takes beyond the kill grace: the agent reports its jobs `cancelled` and exits. */
const FORCE_STOP_MS = 1000;
const POLL_MS = 200;
const HAS_PROC = existsSync('/proc/self/environ');

export class Supervisor {
  private readonly children = new Map<string, Managed>();
  readonly host = hostname();
  private readonly heartbeats = new Map<string, string>();
  private readonly exitRecording: FailureLog;

  constructor(
    private readonly ctx: ServiceContext,
    private readonly metrics: WmMetrics,
  ) {
    this.exitRecording = new FailureLog(ctx.logger, 'recording a worker exit', 'a worker left live is recorded exited at the next start');
  }

  lastHeartbeat(id: string): string | null {
    return this.heartbeats.get(id) ?? null;
  }

  noteHeartbeat(id: string, at: string): void {
    this.heartbeats.set(id, at);
  }

  isAlive(id: string): boolean {
    return this.children.has(id);
  }

  /** Forgets the workers stopped or exited more than HODEI_FORGET_WORKERS_AFTER_MS ago, and the
   *  heartbeats not renewed for as long. */
  async forgetGone(): Promise<void> {
    const afterMs = this.ctx.config.forgetWorkersAfterMs;
    for (const [id, at] of this.heartbeats) if (Date.parse(at) < Date.now() - afterMs) this.heartbeats.delete(id);
    const forgotten = await store.forgetGone(this.ctx.db, afterMs);
    if (forgotten.length) this.ctx.logger.info({ workers: forgotten, after_ms: afterMs }, 'forgot workers long stopped or exited');
  }

  /** Workers a previous run left on this host: adopted while their process lives (and no other
   *  replica of this service manages it), else `exited`. */
  async reconcile(): Promise<void> {
    for (const w of await store.liveOnHost(this.ctx.db, this.host)) {
      if (w.pid !== null && isWorkerProcess(w.pid, w.id)) {
        if (!(await this.managedElsewhere(w.id))) this.adopt(w.id, w.pid);
        continue;
      }
      await store.markWorkerGone(this.ctx.db, w.id, { status: 'exited', exit_code: null, signal: null });
      removeAgentLog(w.id);
      this.ctx.logger.info({ worker_id: w.id, pid: w.pid }, 'worker of a previous run is gone');
    }
  }

  /** Another live replica of this service started or adopted the worker, and answers for it. */
  private async managedElsewhere(id: string): Promise<boolean> {
    const probe: StopRequest = { force: false, waitMs: 0, probe: true };
    try {
      await this.ctx.bus.nc.request(this.ctx.bus.subjects.workerStop(id), encodeJson(probe), { timeout: PROBE_TIMEOUT_MS });
      return true;
    } catch {
      return false;
    }
  }

  private adopt(id: string, pid: number): void {
    const log = this.ctx.logger.child({ worker_id: id, pid });
    const managed: Managed = {
      id,
      pid,
      child: null,
      stopping: false,
      output: new AgentLogFollower(id, 'end', (line) => log.info(line)),
      exited: new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (isWorkerProcess(pid, id)) return;
          clearInterval(timer);
          void this.gone(managed, log, null, null).finally(resolve);
        }, POLL_MS);
        timer.unref();
      }),
    };
    this.manage(managed);
    log.info('adopted a worker process of a previous run');
  }

  private signal(m: Managed, signal: NodeJS.Signals): void {
    if (m.child) {
      m.child.kill(signal);
      return;
    }
    // not our child: its pid may have been reused since the last look
    if (!isWorkerProcess(m.pid, m.id)) return;
    try {
      process.kill(m.pid, signal);
    } catch {
      // gone meanwhile: the poller records the exit
    }
  }

  async start(body: WorkerStart): Promise<ManagedWorker> {
    if (!existsSync(WORKER_MAIN)) {
      throw new ServiceUnavailableError(`the worker agent is not built (${WORKER_MAIN} is missing): run npx tsc -b packages/worker`);
    }
    const c = this.ctx.config;
    const id = newId();
    // the name the agent registers under, stored here too so that both services list it alike
    const name = body.name ?? `worker-${id.slice(-8)}`;
    const env: Record<string, string> = {
      ...inheritedEnv(),
      HODEI_WORKER_ID: id,
      HODEI_WORKER_NAME: name,
      HODEI_WORKER_LABELS: JSON.stringify(body.labels),
      HODEI_WORKER_SLOTS: String(body.capacity.slots),
      HODEI_WORKER_CPU_CORES: String(body.capacity.cpu_cores),
      HODEI_WORKER_MEMORY_BYTES: String(body.capacity.memory_bytes),
      NATS_URL: c.natsUrl,
      HODEI_NATS_PREFIX: c.natsPrefix,
      HODEI_SCHEDULER_URL: c.urls.scheduler,
      HODEI_HEARTBEAT_INTERVAL_MS: String(c.heartbeatIntervalMs),
      // past it the scheduler retries the worker's jobs elsewhere: the agent must have killed them by then
      HODEI_HEARTBEAT_TIMEOUT_MS: String(c.heartbeatTimeoutMs),
      HODEI_KILL_GRACE_MS: String(c.killGraceMs),
      LOG_LEVEL: c.logLevel,
    };
    if (c.apiToken) env.HODEI_API_TOKEN = c.apiToken;
    // traced like this service: the same OTLP endpoint (inherited OTEL_* env), under its own name
    const traced = telemetryActive();
    if (traced) env.OTEL_SERVICE_NAME = 'hodei-worker';
    const args = traced ? ['--import', TELEMETRY_REGISTER, WORKER_MAIN] : [WORKER_MAIN];
    let out: number;
    try {
      out = openAgentLog(id);
    } catch (err) {
      throw new ServiceUnavailableError(`the worker's log file could not be created: ${(err as Error).message}`);
    }
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', out, out] });
    closeSync(out);
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      removeAgentLog(id);
      throw new ServiceUnavailableError(`the worker process could not start: ${err.message}`);
    }
    const log = this.ctx.logger.child({ worker_id: id, pid });
    // the row must exist before an early exit is recorded on it
    let inserted: Promise<unknown> = Promise.resolve();
    const managed: Managed = {
      id,
      pid,
      child,
      stopping: false,
      output: new AgentLogFollower(id, 'start', (line) => log.info(line)),
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => void this.gone(managed, log, code, signal, inserted).finally(resolve));
      }),
    };
    child.on('error', (err) => log.error({ err }, 'worker process error'));
    this.manage(managed);
    const row = store.insertWorker(this.ctx.db, {
      id,
      type: body.type,
      name,
      pid,
      host: this.host,
      labels: body.labels,
      capacity: body.capacity,
    });
    inserted = row;
    return row;
  }

  private manage(m: Managed): void {
    this.children.set(m.id, m);
    this.metrics.workerProcesses.inc();
    m.stops = this.ctx.bus.nc.subscribe(this.ctx.bus.subjects.workerStop(m.id), {
      callback: (err, msg) => {
        if (err) return;
        const req = decodeJson(msg.data) as StopRequest;
        if (req.probe) return void msg.respond(encodeJson({ managed: true }));
        const until = Date.now() + req.waitMs;
        void (req.force ? this.kill(m.id, until) : this.drain(m.id, req.waitMs, until))
          .catch(() => false)
          .then((exited) => msg.respond(encodeJson({ exited })));
      },
    });
  }

  /**
   * A worker this process does not manage: another replica of this service started it (or adopted
   * it), and only that one can signal its process and records its exit as a stop. True once it
   * exited, or when no replica manages it (it is gone).
   */
  private async stopElsewhere(id: string, req: StopRequest): Promise<boolean> {
    if (req.waitMs <= 0) return false;
    try {
      // the answer comes once it exited or `waitMs` passed there: a moment more for the round trip
      const reply = await this.ctx.bus.nc.request(this.ctx.bus.subjects.workerStop(id), encodeJson(req), { timeout: req.waitMs + CONTROL_TIMEOUT_MS });
      return (decodeJson(reply.data) as { exited?: unknown }).exited === true;
    } catch (err) {
      return err instanceof RequestError && err.isNoResponders();
    }
  }

  /** Its process is gone: no longer managed; the exit is recorded (once its row is, `after`) and announced. */
  private async gone(m: Managed, log: Logger, code: number | null, signal: NodeJS.Signals | null, after: Promise<unknown> = Promise.resolve()): Promise<void> {
    this.children.delete(m.id);
    m.stops?.unsubscribe();
    this.metrics.workerProcesses.dec();
    await m.output.close();
    log.info({ code, signal, stopping: m.stopping }, 'worker process exited');
    await after.catch(() => undefined);
    await this.recordExit(m.id, m.stopping, code, signal);
  }

  private async recordExit(id: string, stopping: boolean, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    try {
      await store.markWorkerGone(this.ctx.db, id, { status: stopping ? 'stopped' : 'exited', exit_code: code, signal });
      await this.ctx.bus.js.publish(
        this.ctx.bus.subjects.workerEvent(id, 'exited'),
        encodeJson({ worker_id: id, exit_code: code, signal, stopping, timestamp: new Date().toISOString() }),
      );
      this.exitRecording.worked();
    } catch (err) {
      this.exitRecording.failed(err, { worker_id: id });
    }
  }

  /** Graceful: ask the agent to drain (SIGTERM when it does not answer); resolves once it exited
   *  or after `waitMs`, all of it by `deadline` (epoch ms) at the latest. */
  async drain(id: string, waitMs: number, deadline = Infinity): Promise<boolean> {
    const m = this.children.get(id);
    if (!m) return this.stopElsewhere(id, { force: false, waitMs: Math.min(waitMs, deadline - Date.now()) });
    const until = Math.min(Date.now() + waitMs, deadline);
    m.stopping = true;
    await store.setWorkerStatus(this.ctx.db, id, 'draining');
    const answered = await this.control(id, { action: 'drain' }, until);
    if (!answered) this.signal(m, 'SIGTERM');
    return settledWithin(m.exited, until - Date.now());
  }

  /** Force: the agent kills its jobs (reported `cancelled`) and exits; SIGKILL only when it has
   *  not exited after its own kill grace plus a margin. With a `deadline` (epoch ms), an agent
   *  still at it then is left to finish on its own (it was told; what it reports goes through
   *  JetStream to the next run of this service, which adopts or records it). True once it exited. */
  async kill(id: string, deadline = Infinity): Promise<boolean> {
    const m = this.children.get(id);
    if (!m) return this.stopElsewhere(id, { force: true, waitMs: Math.min(this.ctx.config.killGraceMs + FORCE_MARGIN_MS + CONTROL_TIMEOUT_MS, deadline - Date.now()) });
    m.stopping = true;
    const answered = await this.control(id, { action: 'stop', force: true }, deadline);
    if (!answered) {
      // the agent drains on its first signal and force-stops on the second
      this.signal(m, 'SIGTERM');
      this.signal(m, 'SIGINT');
    }
    const graceEnd = Date.now() + this.ctx.config.killGraceMs + FORCE_MARGIN_MS;
    if (await settledWithin(m.exited, Math.min(graceEnd, deadline) - Date.now())) return true;
    if (graceEnd < deadline) this.signal(m, 'SIGKILL');
    return settledWithin(m.exited, deadline - Date.now());
  }

  /**
   * Service shutdown, over by `deadline` (epoch ms): every worker drains for up to DRAIN_MS, less
   * when that would leave its force stop no time for the kill grace of its jobs; then what is left
   * is force-stopped. A worker still stopping at the deadline is left to finish on its own.
   */
  async stopAll(deadline: number): Promise<void> {
    const left = deadline - Date.now();
    const drainMs = Math.max(0, Math.min(DRAIN_MS, left / 2, left - this.ctx.config.killGraceMs - FORCE_STOP_MS));
    await Promise.all(
      [...this.children.values()].map(async (m) => {
        if (drainMs > 0 && (await this.drain(m.id, drainMs, deadline).catch(() => false))) return;
        if (await this.kill(m.id, deadline)) return;
        this.ctx.logger.warn({ worker_id: m.id, pid: m.pid }, 'worker still stopping at the shutdown deadline: left to finish on its own');
      }),
    );
  }

  /** True when the agent answered, by `deadline` at the latest. */
  private async control(id: string, msg: unknown, deadline = Infinity): Promise<boolean> {
    const timeout = Math.min(CONTROL_TIMEOUT_MS, deadline - Date.now());
    if (timeout <= 0) return false;
    try {
      await this.ctx.bus.nc.request(this.ctx.bus.subjects.control(id), encodeJson(msg), { timeout });
      return true;
    } catch {
      return false;
    }
  }
}

/** `pid` is live and is the agent of worker `id` (its environment says so), not a process that
 *  got the pid since; a zombie's environment reads empty. Without /proc, any live process counts. */
function isWorkerProcess(pid: number, id: string): boolean {
  if (!HAS_PROC) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  try {
    return `\0${readFileSync(`/proc/${pid}/environ`, 'latin1')}`.includes(`\0HODEI_WORKER_ID=${id}\0`);
  } catch {
    return false;
  }
}
