// Test harness: a worker started in-process on this file's own NATS prefix, and helpers to send an
// assignment and collect everything it publishes about that execution.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { connectBus, createLogger, createTestEnv, decodeJson, encodeJson, newId, type Bus } from '@hodei/platform';
import { DEFAULT_SPEC, type AssignmentAck, type ExecutionStatusEvent, type JobSpec, type LogBatch, type LogMessage } from '@hodei/types';
import type { SpawnerKind } from '../src/config.js';
import { startWorker, type StartWorkerOptions, type WorkerHandle } from '../src/index.js';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

export type Line = LogBatch['lines'][number] & { received_at: number };

export interface Run {
  id: string;
  ack: AssignmentAck;
  statuses: ExecutionStatusEvent[];
  lines: Line[];
  batches: number;
  final: Promise<ExecutionStatusEvent>;
  running: Promise<ExecutionStatusEvent>;
}

export function spec(fields: Partial<JobSpec>): JobSpec {
  return {
    name: 'test',
    command: null,
    script: null,
    working_dir: null,
    timeout_seconds: null,
    ...DEFAULT_SPEC,
    ...fields,
  };
}

export async function setup(options: StartWorkerOptions = {}) {
  const env = createTestEnv();
  const bus: Bus = await connectBus(NATS_URL, env.natsPrefix, 'worker-test', createLogger('test', 'silent'));
  const workers: WorkerHandle[] = [];
  const start = async (o: StartWorkerOptions = {}) => {
    const w = await startWorker({
      natsUrl: NATS_URL,
      natsPrefix: env.natsPrefix,
      registerWithScheduler: false,
      killGraceMs: 300,
      // TEST_WORKER_SPAWNER=perl|thread|inline runs the suite with another spawner
      spawner: (process.env.TEST_WORKER_SPAWNER as SpawnerKind | undefined) ?? 'process',
      heartbeatIntervalMs: 100,
      logLevel: (process.env.TEST_LOG_LEVEL as 'silent' | undefined) ?? 'silent',
      ...options,
      ...o,
    });
    workers.push(w);
    return w;
  };
  const worker = await start();

  /** Subscribes to the execution's status and logs, then sends the assignment. */
  async function assign(s: Partial<JobSpec>, opts: { to?: { id: string }; id?: string; traceparent?: string; jobId?: string | null } = {}): Promise<Run> {
    const id = opts.id ?? newId();
    const jobId = opts.jobId === undefined ? newId() : opts.jobId;
    // where worker-manager listens for this execution's statuses: by whether it has a job
    const statuses: ExecutionStatusEvent[] = [];
    const lines: Line[] = [];
    let batches = 0;
    let resolveFinal!: (e: ExecutionStatusEvent) => void;
    let resolveRunning!: (e: ExecutionStatusEvent) => void;
    const final = new Promise<ExecutionStatusEvent>((r) => (resolveFinal = r));
    const running = new Promise<ExecutionStatusEvent>((r) => (resolveRunning = r));
    const statusSub = bus.nc.subscribe(bus.subjects.forExecution(jobId).status(id), {
      callback: (_err, msg) => {
        const e = decodeJson(msg.data) as ExecutionStatusEvent;
        statuses.push(e);
        if (e.status === 'running') resolveRunning(e);
        else {
          resolveFinal(e);
          statusSub.unsubscribe();
          logSub.unsubscribe();
        }
      },
    });
    const logSub = bus.nc.subscribe(bus.subjects.logsAll, {
      callback: (_err, msg) => {
        const now = Date.now();
        const own = (decodeJson(msg.data) as LogMessage).batches.filter((b) => b.execution_id === id);
        if (own.length) batches += 1;
        for (const b of own) for (const l of b.lines) lines.push({ ...l, received_at: now });
      },
    });
    await bus.nc.flush();
    const target = opts.to ?? worker;
    const reply = await bus.nc.request(
      bus.subjects.assign(target.id),
      encodeJson({ execution_id: id, job_id: jobId, attempt: 1, spec: spec(s), traceparent: opts.traceparent }),
      { timeout: 5000 },
    );
    const ack = decodeJson(reply.data) as AssignmentAck;
    if (!ack.accepted) {
      statusSub.unsubscribe();
      logSub.unsubscribe();
    }
    return { id, ack, statuses, lines, get batches() { return batches; }, final, running };
  }

  async function control(target: WorkerHandle, body: unknown): Promise<{ ok: boolean; reason?: string }> {
    const reply = await bus.nc.request(bus.subjects.control(target.id), encodeJson(body), { timeout: 5000 });
    return decodeJson(reply.data) as { ok: boolean; reason?: string };
  }

  async function teardown(): Promise<void> {
    await Promise.all(workers.map((w) => w.stop({ force: true })));
    await bus.nc.close();
    await env.cleanup();
  }

  return { env, bus, worker, start, assign, control, teardown };
}

/** True while /proc/<pid> is a live (non-zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

export const text = (lines: Line[]) => lines.map((l) => l.line);

export interface AgentProcess {
  proc: ChildProcess;
  exit: Promise<number | null>;
  /** Resolves once the agent logged that it started. */
  ready: Promise<void>;
  /** Its stdout so far (JSON log lines). */
  stdout: () => string;
}

/** `node dist/main.js` as its own process, on `prefix`, with a scheduler URL nothing listens on (registration keeps retrying in the background). */
/** `ownGroup`: the agent leads a process group of its own, as in a terminal (Ctrl-C signals the group). */
export function startAgentProcess(prefix: string, id: string, extra: Record<string, string> = {}, ownGroup = false): AgentProcess {
  const proc = spawn(process.execPath, [fileURLToPath(new URL('../dist/main.js', import.meta.url))], {
    env: {
      PATH: process.env.PATH,
      NATS_URL,
      HODEI_NATS_PREFIX: prefix,
      HODEI_WORKER_ID: id,
      HODEI_SCHEDULER_URL: 'http://127.0.0.1:9',
      LOG_LEVEL: 'info',
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  let out = '';
  const ready = new Promise<void>((r) => {
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('worker started')) r();
    });
  });
  return { proc, exit, ready, stdout: () => out };
}

/** TCP ports process `pid` listens on: its socket inodes matched against the LISTEN rows of /proc/<pid>/net/tcp{,6}. */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) inodes.add(m[1]!);
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const row of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1)) {
      const [, local, , state, , , , , , inode] = row.trim().split(/\s+/);
      if (state === '0A' && inodes.has(inode!)) ports.push(parseInt(local!.split(':')[1]!, 16));
    }
  }
  return ports;
}
