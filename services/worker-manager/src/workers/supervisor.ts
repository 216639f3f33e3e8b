// The worker agent processes this service starts: spawn, watch, drain, stop. A worker's exit is
// noticed at once (its 'exit' event), recorded, and announced on `<p>.worker.<id>.exited`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeJson, newId, ServiceUnavailableError, TELEMETRY_REGISTER, telemetryActive, type ServiceContext } from '@hodei/platform';
import type { ManagedWorker, WorkerStart } from '@hodei/types';
import { inheritedEnv } from '../config.js';
import type { WmMetrics } from '../metrics.js';
import * as store from '../store/workers.js';

export const WORKER_MAIN = fileURLToPath(new URL('../../../../packages/worker/dist/main.js', import.meta.url));

interface Managed {
  id: string;
  child: ChildProcess;
  stopping: boolean;
  exited: Promise<void>;
}

const CONTROL_TIMEOUT_MS = 2000;

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

  /** Records left running by a previous run whose process is gone become `exited`. */
  async reconcile(): Promise<void> {
    for (const w of await store.liveOnHost(this.ctx.db, this.host)) {
      if (w.pid !== null && pidAlive(w.pid)) continue;
      await store.markWorkerGone(this.ctx.db, w.id, { status: 'exited', exit_code: null, signal: null });
      this.ctx.logger.info({ worker_id: w.id, pid: w.pid }, 'worker of a previous run is gone');
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
      child,
      stopping: false,
      exited: new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          this.children.delete(id);
          this.metrics.workerProcesses.dec();
          log.info({ code, signal, stopping: managed.stopping }, 'worker process exited');
          void inserted
            .catch(() => undefined)
            .then(() => this.recordExit(id, managed.stopping, code, signal))
            .finally(resolve);
        });
      }),
    };
    child.on('error', (err) => log.error({ err }, 'worker process error'));
    this.children.set(id, managed);
    this.metrics.workerProcesses.inc();
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
    if (!answered) m.child.kill('SIGTERM');
    return waitFor(m.exited, waitMs);
  }

  /** Force: tell the agent to stop now (killing its jobs), SIGKILL after the grace period. */
  async kill(id: string): Promise<void> {
    const m = this.children.get(id);
    if (!m) return;
    m.stopping = true;
    const answered = await this.control(id, { action: 'stop', force: true });
    if (!answered) m.child.kill('SIGTERM');
    if (!(await waitFor(m.exited, Math.max(this.ctx.config.killGraceMs, 500)))) m.child.kill('SIGKILL');
    await m.exited;
  }

  /** Service shutdown: drain every worker with a deadline, then kill what is left. */
  async stopAll(deadlineMs: number): Promise<void> {
    const all = [...this.children.values()];
    await Promise.all(
      all.map(async (m) => {
        if (await this.drain(m.id, deadlineMs).catch(() => false)) return;
        m.child.kill('SIGKILL');
        await m.exited;
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

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
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
