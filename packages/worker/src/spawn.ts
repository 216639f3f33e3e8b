// Starting job processes. spawn() blocks the calling thread for a millisecond or more (fork copies
// the page tables of the whole process), so by default it happens on a spawner thread that owns
// the job's pipes and relays their bytes; the event loop that handles NATS and log shipping stays
// free. The inline spawner does the same work on the main thread (fallback, and for comparison).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { Logger } from '@hodei/platform';
import type { LogStream } from '@hodei/types';

export interface SpawnRequest {
  /** Executable, or /bin/sh for commands and scripts without a shebang. */
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string | undefined;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be watched to its end (the spawner thread died). */
  error?: string;
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

export interface Spawner {
  /** Rejects with the OS error (its `code`, e.g. ENOENT) when the process cannot start. */
  spawn(req: SpawnRequest): Promise<JobHandle>;
  close(): Promise<void>;
}

/** `command` runs as `/bin/sh -c <command> sh <args...>`, so $1.. are the job's args. */
export function commandRequest(command: string, args: string[], env: Record<string, string>, cwd: string | undefined): SpawnRequest {
  return { file: '/bin/sh', args: ['-c', command, 'sh', ...args], env, cwd };
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
  private paused = false;
  hasExited = false;
  isClosed = false;
  private resolveExit!: (info: ExitInfo) => void;
  private resolveClose!: () => void;

  /** Only what changes something reaches `control` (a message to the spawner thread costs). */
  constructor(
    readonly pid: number,
    private readonly control: (op: 'pause' | 'resume' | 'destroy') => void,
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

export class ThreadSpawner implements Spawner {
  private readonly thread: Worker;
  private nextId = 1;
  private readonly starting = new Map<number, { resolve: (h: JobHandle) => void; reject: (e: Error) => void }>();
  private readonly jobs = new Map<number, Relay>();
  private down = false;
  private closing = false;
  private readonly fallback = new InlineSpawner();

  constructor(private readonly logger: Logger) {
    this.thread = new Worker(SPAWN_THREAD, { eval: true });
    this.thread.unref();
    this.thread.on('message', (batch: ThreadMsg[]) => {
      for (const m of batch) this.onMessage(m);
    });
    this.thread.on('error', (err) => this.onDown(err));
    this.thread.on('exit', () => this.onDown(undefined));
  }

  spawn(req: SpawnRequest): Promise<JobHandle> {
    if (this.down) return this.fallback.spawn(req);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.starting.set(id, { resolve, reject });
      this.thread.postMessage({ type: 'spawn', id, ...req });
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.thread.terminate();
  }

  private onMessage(m: ThreadMsg): void {
    if (m.type === 'spawned') {
      const waiter = this.starting.get(m.id);
      this.starting.delete(m.id);
      const relay = new Relay(m.pid, (op) => {
        if (op === 'destroy') this.jobs.delete(m.id);
        if (!this.down) this.thread.postMessage({ type: op, id: m.id });
      });
      this.jobs.set(m.id, relay);
      waiter?.resolve(relay);
    } else if (m.type === 'error') {
      const waiter = this.starting.get(m.id);
      this.starting.delete(m.id);
      waiter?.reject(Object.assign(new Error(m.message), { code: m.code }));
    } else if (m.type === 'data') {
      this.jobs.get(m.id)?.data(m.stream, Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
    } else {
      const relay = this.jobs.get(m.id);
      if (!relay) return;
      if (m.type === 'exit') relay.exit({ code: m.code, signal: m.signal, error: m.error });
      else relay.close();
      if (relay.hasExited && relay.isClosed) this.jobs.delete(m.id);
    }
  }

  /** The thread is gone: later spawns run inline; what it was starting or watching fails. */
  private onDown(err: unknown): void {
    if (this.down) return;
    this.down = true;
    if (!this.closing) this.logger.error({ err }, 'spawner thread died; spawning on the main thread from now on');
    // Never re-spawn these: the thread may have started them already.
    for (const { reject } of this.starting.values()) reject(new Error('the spawner thread stopped before confirming the start'));
    this.starting.clear();
    for (const relay of this.jobs.values()) {
      relay.exit({ code: null, signal: null, error: 'the spawner thread stopped watching the process' });
      relay.close();
    }
    this.jobs.clear();
  }
}
