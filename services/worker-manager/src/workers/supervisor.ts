// The worker agent processes this service starts: spawn, watch, drain, stop. A worker's exit is
// noticed at once (its 'exit' event), recorded, and announced on `<p>.worker.<id>.exited`.
// Workers started by an earlier run of this service that still live are adopted at start-up:
// watched through /proc (an exit is noticed within POLL_MS), drained and stopped like the others.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeJson, newId, ServiceUnavailableError, TELEMETRY_REGISTER, telemetryActive, type Logger, type ServiceContext } from '@hodei/platform';
import type { ManagedWorker, WorkerStart } from '@hodei/types';
import { inheritedEnv } from '../config.js';
import type { WmMetrics } from '../metrics.js';
import * as store from '../store/workers.js';

export const WORKER_MAIN = fileURLToPath(new URL('../../../../packages/worker/dist/main.js', import.meta.url));

interface Managed {
  id: string;
  pid: number;
  /** null: adopted from an earlier run of this service, not our child */
  child: ChildProcess | null;
  stopping: boolean;
  exited: Promise<void>;
}

const CONTROL_TIMEOUT_MS = 2000;
/** A force stop waits the agent's kill grace plus this for it to kill its jobs, report them
 *  `cancelled` and exit, before it is killed itself. */
const FORCE_MARGIN_MS = 3000;
const POLL_MS = 200;
const HAS_PROC = existsSync('/proc/self/environ');

export class Supervisor {
  private readonly children = new Map<string, Managed>();
  readonly host = hostname();
  private readonly heartbeats = new Map<string, string>();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly metrics: WmMetrics,
  ) {}

  lastHeartbeat(id: string): string | null {
    return this.heartbeats.get(id) ?? null;
  }

  noteHeartbeat(id: string, at: string): void {
    this.heartbeats.set(id, at);
  }

  isAlive(id: string): boolean {
    return this.children.has(id);
  }

  /** Workers a previous run left on this host: adopted while their process lives, else `exited`. */
  async reconcile(): Promise<void> {
    for (const w of await store.liveOnHost(this.ctx.db, this.host)) {
      if (w.pid !== null && isWorkerProcess(w.pid, w.id)) {
        this.adopt(w.id, w.pid);
        continue;
      }
      await store.markWorkerGone(this.ctx.db, w.id, { status: 'exited', exit_code: null, signal: null });
      this.ctx.logger.info({ worker_id: w.id, pid: w.pid }, 'worker of a previous run is gone');
    }
  }

  private adopt(id: string, pid: number): void {
    const log = this.ctx.logger.child({ worker_id: id, pid });
    const managed: Managed = {
      id,
      pid,
      child: null,
      stopping: false,
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
    const env: Record<string, string> = {
      ...inheritedEnv(),
      HODEI_WORKER_ID: id,
      HODEI_WORKER_NAME: body.name ?? `worker-${id.slice(-8)}`,
      HODEI_WORKER_LABELS: JSON.stringify(body.labels),
      HODEI_WORKER_SLOTS: String(body.capacity.slots),
      HODEI_WORKER_CPU_CORES: String(body.capacity.cpu_cores),
      HODEI_WORKER_MEMORY_BYTES: String(body.capacity.memory_bytes),
      NATS_URL: c.natsUrl,
      HODEI_NATS_PREFIX: c.natsPrefix,
      HODEI_SCHEDULER_URL: c.urls.scheduler,
      HODEI_HEARTBEAT_INTERVAL_MS: String(c.heartbeatIntervalMs),
      HODEI_KILL_GRACE_MS: String(c.killGraceMs),
      LOG_LEVEL: c.logLevel,
    };
    if (c.apiToken) env.HODEI_API_TOKEN = c.apiToken;
    // traced like this service: the same OTLP endpoint (inherited OTEL_* env), under its own name
    const traced = telemetryActive();
    if (traced) env.OTEL_SERVICE_NAME = 'hodei-worker';
    const args = traced ? ['--import', TELEMETRY_REGISTER, WORKER_MAIN] : [WORKER_MAIN];
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new ServiceUnavailableError(`the worker process could not start: ${err.message}`);
    }
    const log = this.ctx.logger.child({ worker_id: id, pid });
    // the row must exist before an early exit is recorded on it
    let inserted: Promise<unknown> = Promise.resolve();
    for (const [name, stream] of [['stdout', child.stdout], ['stderr', child.stderr]] as const) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => log.info({ stream: name }, line));
    }
    const managed: Managed = {
      id,
      pid,
      child,
      stopping: false,
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => void this.gone(managed, log, code, signal, inserted).finally(resolve));
      }),
    };
    child.on('error', (err) => log.error({ err }, 'worker process error'));
    this.manage(managed);
    const row = store.insertWorker(this.ctx.db, {
      id,
      type: body.type,
      name: body.name ?? null,
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
  }

  /** Its process is gone: no longer managed; the exit is recorded (once its row is, `after`) and announced. */
  private async gone(m: Managed, log: Logger, code: number | null, signal: NodeJS.Signals | null, after: Promise<unknown> = Promise.resolve()): Promise<void> {
    this.children.delete(m.id);
    this.metrics.workerProcesses.dec();
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
    } catch (err) {
      this.ctx.logger.error({ err, worker_id: id }, 'recording a worker exit failed');
    }
  }

  /** Graceful: ask the agent to drain (SIGTERM when it does not answer); resolves once it exited or after `waitMs`. */
  async drain(id: string, waitMs: number): Promise<boolean> {
    const m = this.children.get(id);
    if (!m) return true;
    m.stopping = true;
    await store.setWorkerStatus(this.ctx.db, id, 'draining');
    const answered = await this.control(id, { action: 'drain' });
    if (!answered) this.signal(m, 'SIGTERM');
    return waitFor(m.exited, waitMs);
  }

  /** Force: the agent kills its jobs (reported `cancelled`) and exits; SIGKILL only when it has
   *  not exited after its own kill grace plus a margin. */
  async kill(id: string): Promise<void> {
    const m = this.children.get(id);
    if (!m) return;
    m.stopping = true;
    const answered = await this.control(id, { action: 'stop', force: true });
    if (!answered) {
      // the agent drains on its first signal and force-stops on the second
      this.signal(m, 'SIGTERM');
      this.signal(m, 'SIGINT');
    }
    if (!(await waitFor(m.exited, this.ctx.config.killGraceMs + FORCE_MARGIN_MS))) this.signal(m, 'SIGKILL');
    await m.exited;
  }

  /** Service shutdown: drain every worker with a deadline, then force-stop what is left. */
  async stopAll(deadlineMs: number): Promise<void> {
    const all = [...this.children.values()];
    await Promise.all(
      all.map(async (m) => {
        if (await this.drain(m.id, deadlineMs).catch(() => false)) return;
        await this.kill(m.id);
      }),
    );
  }

  private async control(id: string, msg: unknown): Promise<boolean> {
    try {
      await this.ctx.bus.nc.request(this.ctx.bus.subjects.control(id), encodeJson(msg), { timeout: CONTROL_TIMEOUT_MS });
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

function waitFor(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
