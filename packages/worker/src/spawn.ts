// Starting job processes. A fork copies the page tables of the process that calls it, and that
// process then pays a copy-on-write fault for every page it touches until the child has exec'd:
// 2 ms of CPU per job from the agent. So by default the jobs are started by a small process of
// their own, which owns their pipes and relays their bytes (ProcessSpawner): spawner.c, compiled at
// build time where a C compiler is found, which starts them with posix_spawn (no page table
// copied at all), else spawner.pl, with perl. Without either, a thread of the agent does it
// (ThreadSpawner: the event loop that handles NATS and log shipping does not wait, but the fork is
// the agent's); the inline spawner forks on the main thread (the fallback of both once they are
// gone, and for comparison).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { Logger } from '@hodei/platform';
import type { LogStream } from '@hodei/types';
import type { SpawnerKind } from './config.js';

export interface SpawnRequest {
  /** Executable, or /bin/sh for commands and scripts without a shebang. */
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string | undefined;
  /** Start with its output not read (worker-manager is behind storing lines): resume() reads it. */
  paused?: boolean;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be watched to its end (the spawner process or thread died). */
  error?: string;
  /** The spawner knows that no process of any ended job is left (see spawner.pl): nothing to
   *  search /proc for. Unset: it does not know. */
  alone?: boolean;
}

/** A running job process: own process group, stdin closed, stdout/stderr as raw bytes. */
export interface JobHandle {
  readonly pid: number;
  /** Output as read, in order across both streams; chunks read before a listener are kept. */
  onData(listener: (stream: LogStream, chunk: Buffer) => void): void;
  /** The main process exited (its pipes may stay open: see `closed`). */
  readonly exited: Promise<ExitInfo>;
  /** Both pipes reached end of file. */
  readonly closed: Promise<void>;
  pause(): void;
  resume(): void;
  /** Stop reading and close the pipes. */
  destroy(): void;
}

export interface SpawnerOptions {
  /** Should the agent die, a spawner process kills the jobs it leaves (SIGTERM, then SIGKILL after this). */
  killGraceMs?: number;
  perl?: string;
  /** The compiled spawner (default: where the build puts it); unused when missing. */
  native?: string;
}

/** The spawner HODEI_WORKER_SPAWNER asks for. `process` is the compiled spawner, else (not built, or
 *  it cannot run here) spawner.pl; without perl either, the thread. */
export async function createSpawner(kind: SpawnerKind, logger: Logger, options: SpawnerOptions = {}): Promise<Spawner> {
  if (kind === 'inline') return new InlineSpawner();
  const { killGraceMs = 5000, perl = 'perl', native = NATIVE_SPAWNER } = options;
  const commands: string[][] = [];
  if (kind === 'process' && existsSync(native)) commands.push([native]);
  if (kind === 'process' || kind === 'perl') commands.push(perlSpawner(perl));
  for (const command of commands) {
    const spawner = new ProcessSpawner(logger, command, killGraceMs);
    try {
      await spawner.ready;
      return new RespawningSpawner(spawner, () => new ProcessSpawner(logger, command, killGraceMs), logger);
    } catch (err) {
      logger.warn({ err, spawner: command.join(' ') }, 'cannot run this spawner process: trying the next (spawner.pl needs perl; at last a thread of the agent forks the jobs)');
    }
  }
  return new ThreadSpawner(logger);
}

export interface Spawner {
  /** Rejects with the OS error (its `code`, e.g. ENOENT) when the process cannot start. */
  spawn(req: SpawnRequest): Promise<JobHandle>;
  close(): Promise<void>;
  /** The process that adopts what a job leaves behind (a child subreaper), when there is one. */
  readonly subreaper?: number | undefined;
}

/** `command` runs as `/bin/sh -c <command> sh <args...>`, so $1.. are the job's args. */
export function commandRequest(command: string, args: string[], env: Record<string, string>, cwd: string | undefined): SpawnRequest {
  return { file: '/bin/sh', args: ['-c', command, 'sh', ...args], env, cwd };
}

const ERRNO_NAMES = new Map(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

/** The name of an errno the spawner reports: libuv's, else the OS's (libuv names no ENOEXEC). */
function errnoName(errno: number): string {
  const name = getSystemErrorName(-errno);
  return name.startsWith('Unknown') ? (ERRNO_NAMES.get(errno) ?? name) : name;
}

/** A script file runs by its shebang when it has one, else through /bin/sh. */
export function scriptRequest(path: string, script: string, args: string[], env: Record<string, string>, cwd: string | undefined): SpawnRequest {
  return script.startsWith('#!') ? { file: path, args, env, cwd } : { file: '/bin/sh', args: [path, ...args], env, cwd };
}

/** Shared by both spawners: buffers output until a listener is attached, settles exit/close once. */
class Relay implements JobHandle {
  private listener: ((stream: LogStream, chunk: Buffer) => void) | undefined;
  private early: Array<[LogStream, Buffer]> = [];
  readonly exited: Promise<ExitInfo>;
  readonly closed: Promise<void>;
  hasExited = false;
  isClosed = false;
  private resolveExit!: (info: ExitInfo) => void;
  private resolveClose!: () => void;

  /** Only what changes something reaches `control` (a message to the spawner thread costs). */
  constructor(
    readonly pid: number,
    private readonly control: (op: 'pause' | 'resume' | 'destroy') => void,
    private paused = false,
  ) {
    this.exited = new Promise((r) => (this.resolveExit = r));
    this.closed = new Promise((r) => (this.resolveClose = r));
  }

  exit(info: ExitInfo): void {
    this.hasExited = true;
    this.resolveExit(info);
  }

  close(): void {
    this.isClosed = true;
    this.resolveClose();
  }

  data(stream: LogStream, chunk: Buffer): void {
    if (this.listener) this.listener(stream, chunk);
    else this.early.push([stream, chunk]);
  }

  onData(listener: (stream: LogStream, chunk: Buffer) => void): void {
    this.listener = listener;
    for (const [s, c] of this.early.splice(0)) listener(s, c);
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.control('pause');
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.control('resume');
  }
  destroy(): void {
    if (!this.isClosed) this.control('destroy');
  }
}

export class InlineSpawner implements Spawner {
  spawn(req: SpawnRequest): Promise<JobHandle> {
    let child: ChildProcessByStdio<null, Readable, Readable>;
    try {
      child = spawn(req.file, req.args, { cwd: req.cwd, env: req.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      return Promise.reject(err as Error); // invalid arguments, e.g. a NUL byte
    }
    const pid = child.pid;
    if (pid === undefined) return new Promise((_, reject) => child.once('error', reject));
    const relay = new Relay(pid, (op) => {
      for (const s of [child.stdout, child.stderr]) {
        if (op === 'pause') s.pause();
        else if (op === 'resume') s.resume();
        else s.destroy();
      }
    });
    let open = 2;
    for (const [name, s] of [['stdout', child.stdout], ['stderr', child.stderr]] as const) {
      s.on('data', (chunk: Buffer) => relay.data(name, chunk));
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        if (--open === 0) relay.close();
      };
      s.once('end', end);
      s.once('close', end);
      s.on('error', end);
    }
    child.once('exit', (code, signal) => relay.exit({ code, signal }));
    child.on('error', (err) => relay.exit({ code: null, signal: null, error: err.message }));
    if (req.paused) relay.pause();
    return Promise.resolve(relay);
  }

  async close(): Promise<void> {}
}

// Plain JS so the thread loads the same way from src (tests) and dist. Mirrors InlineSpawner.
const SPAWN_THREAD = `
const { parentPort } = require('node:worker_threads');
const { spawn } = require('node:child_process');
const children = new Map();
// What happens in one turn of this thread's loop (the output of many jobs, exits) goes to the main
// thread as one message, in order: a message per pipe read woke the main thread thousands of times
// a second with many jobs writing.
let queue = [];
let transfer = [];
const flush = () => {
  const msgs = queue;
  const moved = transfer;
  queue = [];
  transfer = [];
  try { parentPort.postMessage(msgs, moved); } catch { parentPort.postMessage(msgs); }
};
const post = (msg, chunk) => {
  if (chunk) {
    const own = chunk.byteOffset === 0 && chunk.buffer.byteLength === chunk.length ? chunk : Uint8Array.prototype.slice.call(chunk);
    msg.chunk = new Uint8Array(own.buffer, own.byteOffset, own.length);
    if (!transfer.includes(own.buffer)) transfer.push(own.buffer);
  }
  if (queue.push(msg) === 1) setImmediate(flush);
};
parentPort.on('message', (m) => {
  if (m.type !== 'spawn') {
    const child = children.get(m.id);
    if (!child) return;
    for (const s of [child.stdout, child.stderr]) {
      if (m.type === 'pause') s.pause(); else if (m.type === 'resume') s.resume(); else s.destroy();
    }
    if (m.type === 'destroy') children.delete(m.id);
    return;
  }
  let child;
  try {
    child = spawn(m.file, m.args, { cwd: m.cwd, env: m.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    return post({ type: 'error', id: m.id, message: err.message, code: err.code });
  }
  if (child.pid === undefined) {
    child.once('error', (err) => post({ type: 'error', id: m.id, message: err.message, code: err.code }));
    return;
  }
  children.set(m.id, child);
  post({ type: 'spawned', id: m.id, pid: child.pid });
  let open = 2;
  let over = 0; // exit and close: the parent asks nothing more of a child it saw both of
  const done = () => { if (++over === 2) children.delete(m.id); };
  for (const name of ['stdout', 'stderr']) {
    const s = child[name];
    s.on('data', (chunk) => post({ type: 'data', id: m.id, stream: name }, chunk));
    let ended = false;
    const end = () => { if (ended) return; ended = true; if (--open === 0) { done(); post({ type: 'closed', id: m.id }); } };
    s.once('end', end); s.once('close', end); s.on('error', end);
  }
  if (m.paused) { child.stdout.pause(); child.stderr.pause(); }
  child.once('exit', (code, signal) => { done(); post({ type: 'exit', id: m.id, code, signal }); });
  child.on('error', (err) => post({ type: 'exit', id: m.id, code: null, signal: null, error: err.message }));
});
`;

type ThreadMsg =
  | { type: 'spawned'; id: number; pid: number }
  | { type: 'error'; id: number; message: string; code?: string }
  | { type: 'data'; id: number; stream: LogStream; chunk: Uint8Array }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null; error?: string }
  | { type: 'closed'; id: number };

type ControlOp = 'pause' | 'resume' | 'destroy';

/** Forking happens elsewhere (a thread, a process): requests go out by id, and what comes back is
 *  routed to the job's Relay. Once that elsewhere is gone, spawns run inline. */
abstract class RemoteSpawner implements Spawner {
  private nextId = 1;
  private readonly starting = new Map<number, { file: string; paused: boolean; resolve: (h: JobHandle) => void; reject: (e: Error) => void }>();
  private readonly jobs = new Map<number, Relay>();
  protected down = false;
  protected closing = false;
  /** What happens to the jobs that start after it died, for the log. */
  protected afterDown = 'spawning on the main thread from now on';
  private readonly fallback = new InlineSpawner();

  /** `where` names the elsewhere in errors and logs ("spawner thread"). */
  constructor(
    private readonly logger: Logger,
    private readonly where: string,
  ) {}

  spawn(req: SpawnRequest): Promise<JobHandle> {
    if (this.down) return this.fallback.spawn(req);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.starting.set(id, { file: req.file, paused: req.paused === true, resolve, reject });
      try {
        this.request(id, req);
      } catch (err) {
        this.starting.delete(id);
        reject(err as Error);
      }
    });
  }

  abstract close(): Promise<void>;
  /** Sends the spawn request; throws what spawn() would refuse before forking. */
  protected abstract request(id: number, req: SpawnRequest): void;
  protected abstract control(id: number, op: ControlOp): void;

  protected started(id: number, pid: number): void {
    const waiter = this.starting.get(id);
    this.starting.delete(id);
    const relay = new Relay(
      pid,
      (op) => {
        if (op === 'destroy') this.jobs.delete(id);
        if (!this.down) this.control(id, op);
      },
      waiter?.paused,
    );
    this.jobs.set(id, relay);
    waiter?.resolve(relay);
  }

  /** The process could not start: the error as Node's spawn() reports it (`code` e.g. ENOENT;
   *  without a message, Node's own form: `spawn <file> <code>`). */
  protected failed(id: number, code: string | undefined, message?: string): void {
    const waiter = this.starting.get(id);
    this.starting.delete(id);
    waiter?.reject(Object.assign(new Error(message ?? `spawn ${waiter.file} ${code}`), { code }));
  }

  protected output(id: number, stream: LogStream, chunk: Buffer): void {
    this.jobs.get(id)?.data(stream, chunk);
  }

  protected ended(id: number, what: { exit: ExitInfo } | 'closed'): void {
    const relay = this.jobs.get(id);
    if (!relay) return;
    if (what === 'closed') relay.close();
    else relay.exit(what.exit);
    if (relay.hasExited && relay.isClosed) this.jobs.delete(id);
  }

  /** The elsewhere is gone: later spawns run inline; what it was starting or watching fails. */
  protected onDown(err: unknown): void {
    if (this.down) return;
    this.down = true;
    if (!this.closing) this.logger.error({ err }, `${this.where} died; ${this.afterDown}`);
    // Never re-spawn these: they may have started already.
    for (const { reject } of this.starting.values()) reject(new Error(`the ${this.where} stopped before confirming the start`));
    this.starting.clear();
    for (const relay of this.jobs.values()) {
      relay.exit({ code: null, signal: null, error: `the ${this.where} stopped watching the process` });
      relay.close();
    }
    this.jobs.clear();
  }
}

export class ThreadSpawner extends RemoteSpawner {
  private readonly thread: Worker;

  constructor(logger: Logger) {
    super(logger, 'spawner thread');
    this.thread = new Worker(SPAWN_THREAD, { eval: true });
    this.thread.unref();
    this.thread.on('message', (batch: ThreadMsg[]) => {
      for (const m of batch) this.onMessage(m);
    });
    this.thread.on('error', (err) => this.onDown(err));
    this.thread.on('exit', () => this.onDown(undefined));
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.thread.terminate();
  }

  protected request(id: number, req: SpawnRequest): void {
    this.thread.postMessage({ type: 'spawn', id, ...req });
  }

  protected control(id: number, op: ControlOp): void {
    this.thread.postMessage({ type: op, id });
  }

  private onMessage(m: ThreadMsg): void {
    if (m.type === 'spawned') this.started(m.id, m.pid);
    else if (m.type === 'error') this.failed(m.id, m.code, m.message);
    else if (m.type === 'data') this.output(m.id, m.stream, Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
    else this.ended(m.id, m.type === 'exit' ? { exit: { code: m.code, signal: m.signal, error: m.error } } : 'closed');
  }
}

/** Where spawner.pl lives: the package root, one level above both src/ and dist/. */
const SPAWNER_SCRIPT = fileURLToPath(new URL('../spawner.pl', import.meta.url));
/** Where build-spawner.mjs puts the compiled spawner.c. */
export const NATIVE_SPAWNER = fileURLToPath(new URL('../dist/spawner', import.meta.url));

export const perlSpawner = (perl = 'perl'): string[] => [perl, SPAWNER_SCRIPT];

// a number with two names (6 SIGABRT/SIGIOT, 29 SIGIO/SIGPOLL) gets the first, the one Node and kill -l use
const SIGNAL_NAMES = new Map(Object.entries(os.constants.signals).reverse().map(([name, n]) => [n, name as NodeJS.Signals]));
const EMPTY: Buffer = Buffer.alloc(0);
const OPS: Record<ControlOp, string> = { pause: 'H', resume: 'R', destroy: 'K' };

/** A small process of its own (spawner.c or spawner.pl) starts the jobs and relays their output
 *  (the protocol is in spawner.pl). A spawn there costs a fraction of a fork of the agent. */
export class ProcessSpawner extends RemoteSpawner {
  /** Resolves once the spawner runs; rejects when it cannot (no perl on PATH, say). */
  readonly ready: Promise<void>;
  private readonly proc: ChildProcessByStdio<Writable, Readable, null>;
  private pending = EMPTY;
  private corked = false;
  private settleReady!: (err?: Error) => void;

  /** `killGraceMs`: should the agent die, the spawner kills the jobs it leaves (SIGTERM, then SIGKILL after this). */
  /** `command`: the spawner to run, `[NATIVE_SPAWNER]` or `perlSpawner()` (createSpawner picks). */
  constructor(logger: Logger, command: string[], killGraceMs = 5000) {
    super(logger, 'spawner process');
    this.afterDown = 'a new one starts the next job (if none can start, the agent does)';
    this.ready = new Promise((resolve, reject) => (this.settleReady = (err) => (err ? reject(err) : resolve())));
    this.ready.catch(() => undefined); // awaited by whoever cares: never an unhandled rejection
    // A session of its own: Ctrl-C in a terminal (SIGINT to the agent's process group) or a hang-up
    // drains the agent and must not kill the process that watches its jobs. It exits when the
    // agent does (end of file on its stdin), and kills whatever jobs are still running then.
    this.proc = spawn(command[0]!, [...command.slice(1), String(killGraceMs)], { stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    this.proc.stdin.on('error', () => undefined); // EPIPE once it is gone: 'exit' says so
    this.proc.stdout.on('data', (chunk: Buffer) => this.onOutput(chunk));
    this.proc.on('error', (err) => this.onDown(err));
    this.proc.on('exit', (code, signal) => this.onDown(new Error(`the spawner process exited (${signal ?? `code ${code}`})`)));
  }

  get subreaper(): number | undefined {
    return this.down ? undefined : this.proc.pid;
  }

  get isDown(): boolean {
    return this.down;
  }

  protected override onDown(err: unknown): void {
    this.settleReady(err as Error);
    super.onDown(err);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.down) return;
    const exited = once(this.proc, 'exit');
    this.proc.stdin.end(); // it exits at end of file
    await exited;
  }

  protected request(id: number, req: SpawnRequest): void {
    const fields = [req.file, req.cwd ?? '', String(req.args.length), ...req.args, ...Object.entries(req.env).map(([k, v]) => `${k}=${v}`)];
    if (fields.some((f) => f.includes('\0'))) {
      throw Object.assign(new TypeError('the command, its arguments, environment and working directory must not contain NUL bytes'), { code: 'ERR_INVALID_ARG_VALUE' });
    }
    this.send(req.paused ? 'Q' : 'P', id, Buffer.from(fields.join('\0')));
  }

  protected control(id: number, op: ControlOp): void {
    this.send(OPS[op], id);
  }

  /** What one turn of the event loop asks leaves in one write. */
  private send(op: string, id: number, payload = EMPTY): void {
    const stdin = this.proc.stdin;
    if (!this.corked) {
      this.corked = true;
      stdin.cork();
      process.nextTick(() => {
        this.corked = false;
        stdin.uncork();
      });
    }
    stdin.write(`${op} ${id} ${payload.length}\n`, 'latin1');
    if (payload.length) stdin.write(payload);
  }

  private onOutput(chunk: Buffer): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = 0;
    for (let nl = buf.indexOf(10, at); nl !== -1; nl = buf.indexOf(10, at)) {
      const [type, idText, a = '', b = '', c] = buf.toString('latin1', at, nl).split(' ');
      const id = Number(idText);
      if (type === 'D') {
        const end = nl + 1 + Number(b);
        if (buf.length < end) break;
        this.output(id, a === 'o' ? 'stdout' : 'stderr', buf.subarray(nl + 1, end));
        at = end;
        continue;
      }
      at = nl + 1;
      if (type === 'Y') this.settleReady();
      else if (type === 'S') this.started(id, Number(a));
      else if (type === 'F') this.failed(id, errnoName(Number(a)));
      else if (type === 'X') {
        const exit = a === '-1' ? { code: null, signal: SIGNAL_NAMES.get(Number(b)) ?? null } : { code: Number(a), signal: null };
        this.ended(id, { exit: { ...exit, alone: c === '1' } });
      } else if (type === 'C') this.ended(id, 'closed');
    }
    this.pending = at < buf.length ? buf.subarray(at) : EMPTY;
  }
}

/** A spawner process that died (`kill -9`, the OOM killer) is replaced by a new one for the jobs that
 *  start after: jobs spawned from the agent itself would outlive a later `kill -9` of the agent, as
 *  only a spawner process kills what the agent leaves. Inline only when no new one starts. */
export class RespawningSpawner implements Spawner {
  private restarting: Promise<void> | undefined;
  private gaveUp = false;
  private closed = false;

  constructor(
    private current: ProcessSpawner,
    private readonly next: () => ProcessSpawner,
    private readonly logger: Logger,
  ) {}

  get subreaper(): number | undefined {
    return this.current.subreaper;
  }

  async spawn(req: SpawnRequest): Promise<JobHandle> {
    if (this.current.isDown && !this.gaveUp && !this.closed) await (this.restarting ??= this.restart());
    return this.current.spawn(req);
  }

  private async restart(): Promise<void> {
    const spawner = this.next();
    try {
      await spawner.ready;
      this.current = spawner;
      this.logger.warn({ pid: spawner.subreaper }, 'a new spawner process starts the jobs');
    } catch (err) {
      this.gaveUp = true;
      this.logger.error({ err }, 'cannot start a new spawner process: spawning on the main thread from now on');
    } finally {
      this.restarting = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.restarting;
    await this.current.close();
  }
}
