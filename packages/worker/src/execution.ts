// One execution on this worker: spawn, read and number its output, ship logs and status, enforce
// the timeout, honour cancel, and clean up every process and temp file it leaves.
import { constants, existsSync, mkdtempSync, rmdirSync } from 'node:fs';
import { access, open, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Assignment, ExecutionStatus, ExecutionStatusEvent, LogStream, Progress, Subjects } from '@hodei/types';
import {
  currentTraceparent,
  encodeJson,
  MESSAGE_HEADROOM,
  publishTraced,
  resultPartBytes,
  SpanKind,
  SpanStatusCode,
  splitResult,
  startSpan,
  type Context as TraceContext,
  type Logger,
  type Span,
} from '@hodei/platform';
import { LineSplitter } from './lines.js';
import type { PublishOutage } from './outage.js';
import { hasExited } from './procs.js';
import { parseProgress } from './progress.js';
import type { Reaper } from './reaper.js';
import { delay, type ExecutionLog, type LogShipper } from './shipper.js';
import { commandRequest, scriptRequest, type JobHandle, type SpawnRequest, type Spawner } from './spawn.js';

/** After the main process exits, how long output already in the pipes may still be read. */
export const EXIT_DRAIN_MS = 50;
/** How long the end of the pipes is waited for when no process that could hold them is left. */
export const EXIT_CLOSE_MS = 10_000;
export const MAX_RESULT_BYTES = 1024 * 1024;
/** Deeper results cannot be sent: JSON.stringify runs out of stack a few thousand levels down
 *  (and PostgreSQL's jsonb not far below). */
export const MAX_RESULT_DEPTH = 1000;
const PROGRESS_INTERVAL_MS = 100;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

export interface ExecutionDeps {
  js: JetStreamClient;
  subjects: Subjects;
  workerId: string;
  baseEnv: Record<string, string>;
  tmpDir: string;
  runningAfterMs: number;
  /** The worker's log shipper (one for all its executions). */
  logs: LogShipper;
  /** Says once that publishing to NATS fails, and once that it works again (shared with `logs`). */
  outage: PublishOutage;
  reaper: Reaper;
  spawner: Spawner;
  logger: Logger;
  /** The process is over and its logs are shipped: called just before the final status goes out,
   *  so the slot is free by the time anyone hears of the end. */
  onSlotFree: (executionId: string) => void;
  /** The largest message the NATS server takes (its `max_payload`, headers included). */
  maxPayload: () => number;
}

/** `written_off`: the scheduler recorded it over (lost, cancelled, ended) or placed it on another
 *  worker while it still ran here: this run is not the execution's, and reports no final status. */
/** `stopped`: cancelled because the worker itself was stopped with force. */
export type KillReason = 'cancelled' | 'stopped' | 'timed_out' | 'lost' | 'written_off';

export interface ExecutionOutcome {
  status: ExecutionStatus;
  exitCode: number | null;
  signal: string | null;
}

export class Execution {
  readonly id: string;
  /** Resolves once the final status is published (or given up on). */
  readonly finished: Promise<ExecutionOutcome>;
  private resolveFinished!: (o: ExecutionOutcome) => void;
  private child: JobHandle | undefined;
  /** The log shipper asked to stop reading the pipes (its backlog, or worker-manager's). */
  private readingPaused = false;
  private killReason: KillReason | undefined;
  private ended = false;
  private seq = 0;
  private readTimestamp = '';
  private readonly shipper: ExecutionLog;
  private readonly log: Logger;
  private statusChain: Promise<void> = Promise.resolve();
  private lastProgressAt = 0;
  private pendingProgress: Progress | null = null;
  private progressTimer: NodeJS.Timeout | undefined;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private runningTimer: NodeJS.Timeout | undefined;
  private runningAnnounced = false;
  private startedAt = new Date();
  /** The execution's own folder in the temp dir (mode 700): its result file and script. */
  private dir: string | undefined;
  private resultPath = '';
  /** The run as a span of the execution's trace: the job's TRACEPARENT and the status events descend from it. */
  private readonly trace: { span: Span; ctx: TraceContext };

  constructor(
    private readonly deps: ExecutionDeps,
    readonly assignment: Assignment,
  ) {
    this.id = assignment.execution_id;
    this.log = deps.logger.child({ execution_id: this.id });
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    this.trace = startSpan('worker run', {
      kind: SpanKind.CONSUMER,
      parent: assignment.traceparent ?? null,
      attributes: { 'hodei.execution_id': this.id, 'hodei.worker_id': deps.workerId, 'hodei.attempt': assignment.attempt },
    });
    this.shipper = deps.logs.open(this.id, (pause) => this.onPressure(pause));
  }

  start(): void {
    this.run().catch(async (err: unknown) => {
      // A bug here must still end the execution for everyone watching it, not leave it running.
      this.log.error({ err }, 'execution failed inside the worker');
      if (this.finalSent) return;
      if (this.child?.pid) this.deps.reaper.terminate(this.id, this.child.pid);
      await this.finish('failed', null, null, `internal worker error: ${(err as Error).message}`, new Date(), {}).catch(() =>
        this.resolveFinished({ status: 'failed', exitCode: null, signal: null }),
      );
    });
  }

  /** Its process has not exited yet (its final status may still be on its way after that). */
  get running(): boolean {
    return !this.ended;
  }

  /** SIGTERM to everything of the execution, SIGKILL after the grace period. False when already over. */
  kill(reason: KillReason): boolean {
    if (this.ended) return false;
    // its process exited by itself, the news of it not read yet (a busy agent, a timeout due at the same
    // moment): that end stands, not a cancel or a timeout that came after it
    if (this.child?.pid !== undefined && hasExited(this.child.pid)) return false;
    this.killReason ??= reason;
    this.deps.reaper.terminate(this.id, this.child?.pid);
    return true;
  }

  private async run(): Promise<void> {
    const spec = this.assignment.spec;
    // A fresh folder per run, only this user's: what the job writes to its result file (made with
    // the job's umask, often 644) cannot be read by other users of the temp dir, nor a script's
    // name be taken before it; a file left by an earlier attempt can never pass for this one's.
    try {
      // on the main thread: one system call, cheaper than a hop to the thread pool and back
      this.dir = mkdtempSync(path.join(this.deps.tmpDir, `hodei-${this.id}-`));
    } catch (err) {
      return this.failBeforeStart(`cannot create the execution's folder in ${this.deps.tmpDir}: ${(err as Error).message}`);
    }
    this.resultPath = path.join(this.dir, 'result.json');
    const env: Record<string, string> = {
      ...this.deps.baseEnv,
      ...spec.env,
      HODEI_EXECUTION_ID: this.id,
      HODEI_RESULT_FILE: this.resultPath,
    };
    if (this.assignment.job_id) env.HODEI_JOB_ID = this.assignment.job_id;
    else delete env.HODEI_JOB_ID;
    const traceparent = currentTraceparent(this.trace.ctx) ?? this.assignment.traceparent;
    if (traceparent) env.TRACEPARENT = traceparent;
    else delete env.TRACEPARENT; // the agent's own, or a job's stored before the name was refused: not this run's trace
    const cwd = spec.working_dir ?? undefined;

    let req: SpawnRequest;
    if (spec.script !== null) {
      const script = scriptText(spec.script);
      // "#!/usr/bin/env bash\r" starts, and env says only that it found no 'bash\r' (exit 127)
      const unrunnable = unrunnableShebang(script);
      if (unrunnable) return this.failBeforeStart(unrunnable);
      const file = path.join(this.dir, 'script');
      try {
        await writeFile(file, script, { mode: 0o700, flag: 'wx' });
      } catch (err) {
        return this.failBeforeStart(`cannot write the script file ${file}: ${(err as Error).message}`);
      }
      req = scriptRequest(file, script, spec.args, env, cwd);
    } else if (spec.command !== null) {
      req = commandRequest(spec.command, spec.args, env, cwd);
    } else {
      return this.failBeforeStart('the job has neither a command nor a script');
    }

    this.startedAt = new Date();
    let child: JobHandle;
    try {
      child = await this.deps.spawner.spawn({ ...req, paused: this.readingPaused });
    } catch (err) {
      return this.failBeforeStart(await this.describeSpawnError(err as NodeJS.ErrnoException, req));
    }
    this.child = child;
    if (this.readingPaused) child.pause();
    else child.resume(); // paused at the start, and the backlog is gone since

    // A job over within runningAfterMs goes from queued straight to its final status (which
    // carries started_at): a message, an ack and a row update less per short job in each service.
    this.runningTimer = setTimeout(() => this.announceRunning(), this.deps.runningAfterMs);
    if (spec.timeout_seconds) {
      this.timeoutTimer = setTimeout(() => this.kill('timed_out'), spec.timeout_seconds * 1000);
    }
    if (this.killReason) this.deps.reaper.terminate(this.id, child.pid); // cancelled while spawning

    const out = new LineSplitter((line, _bytes, noNewline, whole) => this.emitLine('stdout', line, noNewline, whole));
    const err = new LineSplitter((line, _bytes, noNewline, whole) => this.emitLine('stderr', line, noNewline, whole));
    child.onData((stream, chunk) => {
      this.readTimestamp = new Date().toISOString();
      (stream === 'stdout' ? out : err).push(chunk);
    });

    const outcome = await child.exited;
    const finishedAt = new Date();
    this.ended = true;
    clearTimeout(this.timeoutTimer);
    clearTimeout(this.runningTimer); // over before it was announced: the final status says it all
    // The main process is gone; read what is already in the pipes, but do not wait for a
    // descendant that keeps them open. A spawner process relays what the pipes hold before the
    // exit, but not while they are paused: what is left then comes after the resume above, on a
    // busy machine later than EXIT_DRAIN_MS. When it knows that no process is left to hold the
    // pipes, their end comes, and is waited for.
    child.resume();
    let drainTimer: NodeJS.Timeout | undefined;
    await Promise.race([child.closed, new Promise<void>((r) => (drainTimer = setTimeout(r, outcome.alone ? EXIT_CLOSE_MS : EXIT_DRAIN_MS)))]);
    clearTimeout(drainTimer);
    child.destroy();
    this.readTimestamp = new Date().toISOString();
    out.end();
    err.end();
    if (!outcome.alone) this.deps.reaper.cleanup(this.id, child.pid);

    let status: ExecutionStatus;
    let exitCode: number | null = null;
    let signal: string | null = null;
    let message: string;
    if (outcome.error !== undefined) {
      status = 'failed';
      message = `process error: ${outcome.error}`;
    } else {
      exitCode = outcome.code;
      signal = outcome.signal;
      if (this.killReason === 'timed_out') {
        status = 'timed_out';
        message = `timed out after ${spec.timeout_seconds ?? 0} s`;
      } else if (this.killReason === 'cancelled') {
        status = 'cancelled';
        message = 'cancelled';
      } else if (this.killReason === 'stopped') {
        status = 'cancelled';
        message = 'cancelled: its worker was stopped with force';
      } else if (this.killReason === 'lost') {
        status = 'lost';
        message = 'killed: the worker lost its NATS connection, so the job may be placed elsewhere';
      } else if (this.killReason === 'written_off') {
        status = 'lost';
        message = 'killed: the scheduler recorded the execution over or placed it on another worker';
      } else if (exitCode === 0) {
        status = 'completed';
        message = 'exited with code 0';
      } else {
        status = 'failed';
        message = exitCode !== null ? `exited with code ${exitCode}` : `killed by signal ${signal ?? 'unknown'}`;
      }
    }
    const result = await this.readResult();
    await this.removeDir();
    await this.finish(status, exitCode, signal, message, finishedAt, result);
  }

  private onPressure(pause: boolean): void {
    this.readingPaused = pause;
    const child = this.child;
    if (!child || this.ended) return;
    if (pause) {
      this.log.debug('log backlog over the high-water mark: pausing the pipes');
      child.pause();
    } else {
      child.resume();
    }
  }

  /** `whole`: not a piece of a line over 64 KiB, which is no progress (its message would be cut, with the
   *  piece's suffix, and a later piece that starts with ::progress is no line of its own). */
  private emitLine(stream: LogStream, line: string, noNewline: boolean, whole: boolean): void {
    this.seq += 1;
    this.shipper.add(this.seq, stream, line, this.readTimestamp, noNewline);
    // also a line redrawn with \r whose later part is the progress ("downloading\r::progress 3/4")
    if (whole && (line.startsWith('::progress') || line.includes('\r::progress'))) {
      const progress = parseProgress(line, this.readTimestamp);
      if (progress) this.onProgress(progress);
    }
  }

  /** At most one progress event per PROGRESS_INTERVAL_MS; the latest one always goes out. */
  private onProgress(progress: Progress): void {
    this.pendingProgress = progress;
    if (this.progressTimer) return;
    const wait = this.lastProgressAt + PROGRESS_INTERVAL_MS - Date.now();
    if (wait <= 0) return this.sendProgress();
    this.progressTimer = setTimeout(() => {
      this.progressTimer = undefined;
      this.sendProgress();
    }, wait);
  }

  private sendProgress(): void {
    const progress = this.pendingProgress;
    if (!progress) return;
    this.pendingProgress = null;
    this.lastProgressAt = Date.now();
    clearTimeout(this.runningTimer);
    this.runningAnnounced = true;
    this.publishStatus({ status: 'running', started_at: this.startedAt.toISOString(), progress });
  }

  private announceRunning(): void {
    if (this.runningAnnounced || this.ended) return;
    this.runningAnnounced = true;
    this.publishStatus({ status: 'running', started_at: this.startedAt.toISOString() });
  }

  private async failBeforeStart(message: string): Promise<void> {
    const now = new Date();
    this.ended = true;
    this.readTimestamp = now.toISOString();
    this.emitLine('stderr', `hodei: ${message}`, false, true);
    this.log.warn({ reason: message }, 'execution could not start');
    await this.removeDir();
    await this.finish('failed', null, null, message, now, {});
  }

  private async describeSpawnError(error: NodeJS.ErrnoException, req: SpawnRequest): Promise<string> {
    const script = this.assignment.spec.script;
    const line = script === null ? undefined : shebang(scriptText(script))?.trim();
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR' || error.code === 'EACCES') {
      if (req.cwd !== undefined) {
        const dir = await stat(req.cwd).catch(() => null);
        if (!dir) return `working directory does not exist: ${req.cwd}`;
        if (!dir.isDirectory()) return `working directory is not a directory: ${req.cwd}`;
      }
      if (line !== undefined) {
        // the interpreter can run: it is the script the system refuses, from a folder mounted noexec
        if (error.code === 'EACCES' && (await executable(line.slice(2).trim().split(/\s+/)[0]!))) {
          return `cannot run the script: the system refuses to run programs from ${this.deps.tmpDir} (EACCES: is it mounted noexec?); give the worker HODEI_WORKER_TMPDIR where programs may run`;
        }
        return `cannot run the script: its interpreter (${line}) was not found or is not executable`;
      }
      if (error.code === 'EACCES' && req.cwd !== undefined) return `working directory is not accessible: ${req.cwd}`;
    }
    if (error.code === 'ENOEXEC' && line !== undefined) {
      return `cannot run the script: its interpreter (${line}) is not a program the system can run (ENOEXEC): name a binary, or a script that starts with #! itself`;
    }
    return `cannot start the process: ${error.message}`;
  }

  /** The result file, read (its folder goes after); nothing when the job wrote none. Neither a symbolic
   *  link (it made the agent read, and quote in the error, whatever it pointed to) nor a FIFO
   *  (opening one waited for a writer for ever: the execution never ended) is followed. */
  private async readResult(): Promise<{ result?: unknown; result_error?: string }> {
    // most jobs write none: a stat here is cheaper than a failed open on the thread pool
    if (!existsSync(this.resultPath)) return {};
    let handle;
    try {
      handle = await open(this.resultPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return {};
      if (code === 'ELOOP') return { result_error: 'result file is a symbolic link: write the JSON to the file itself' };
      return { result_error: `result file could not be read: ${(err as Error).message}` };
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) return { result_error: 'result file is not a regular file' };
      if (info.size > MAX_RESULT_BYTES) return { result_error: `result file is larger than 1 MiB (${info.size} bytes)` };
      let text: string;
      try {
        // JSON is UTF-8 (RFC 8259): bytes that are not were stored as U+FFFD, as if valid; a
        // byte-order mark (PowerShell's Out-File writes one) is dropped
        text = STRICT_UTF8.decode(await handle.readFile());
      } catch {
        return { result_error: 'result file is not valid JSON: it is not UTF-8 text' };
      }
      let result: unknown;
      try {
        result = JSON.parse(text) as unknown;
      } catch (err) {
        return { result_error: `result file is not valid JSON: ${(err as Error).message}` };
      }
      if (deeperThan(result, MAX_RESULT_DEPTH)) return { result_error: `result is nested deeper than ${MAX_RESULT_DEPTH} levels` };
      return { result };
    } catch (err) {
      return { result_error: `result file could not be read: ${(err as Error).message}` };
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  private async removeDir(): Promise<void> {
    if (!this.dir) return;
    try {
      rmdirSync(this.dir); // most jobs leave it empty: one system call, no walk on the thread pool
    } catch {
      await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async finish(
    status: ExecutionStatus,
    exitCode: number | null,
    signal: string | null,
    message: string,
    finishedAt: Date,
    result: { result?: unknown; result_error?: string },
  ): Promise<void> {
    // Every log line is acknowledged before the final status goes out.
    await this.shipper.flush();
    this.shipper.close();
    clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    // a run written off reports nothing: the execution's status is recorded already, or comes
    // from the worker it is placed on
    const reported = this.killReason !== 'written_off';
    if (reported) this.sendProgress();
    this.deps.onSlotFree(this.id);
    this.finalSent = true;
    if (reported) {
      this.publishStatus({
        status,
        exit_code: exitCode,
        signal,
        message,
        last_seq: this.seq,
        started_at: this.startedAt.toISOString(),
        finished_at: finishedAt.toISOString(),
        duration_ms: Math.max(0, finishedAt.getTime() - this.startedAt.getTime()),
        ...result,
      });
    }
    await this.statusChain;
    this.trace.span.setAttributes({ 'hodei.status': status, ...(exitCode !== null ? { 'process.exit.code': exitCode } : {}) });
    // a cancel is the user's choice, not a failure of the run
    if (status === 'failed' || status === 'timed_out') this.trace.span.setStatus({ code: SpanStatusCode.ERROR, message });
    this.trace.span.end();
    this.log.debug({ status, exit_code: exitCode, signal, last_seq: this.seq }, 'execution finished');
    this.resolveFinished({ status, exitCode, signal });
  }

  /** Status events go out one after another, in the order they were made. */
  private publishStatus(fields: Partial<ExecutionStatusEvent> & { status: ExecutionStatus }): void {
    const event: ExecutionStatusEvent = {
      execution_id: this.id,
      job_id: this.assignment.job_id,
      worker_id: this.deps.workerId,
      timestamp: new Date().toISOString(),
      ...fields,
    };
    const subject = this.deps.subjects.forExecution(this.assignment.job_id).status(this.id);
    let payload = encodeJson(event);
    const maxPayload = this.deps.maxPayload();
    // a publish over max_payload fails every time: a result that does not fit goes ahead in parts
    let parts: Uint8Array[] = [];
    if (payload.length > maxPayload - MESSAGE_HEADROOM && event.result !== undefined) {
      const { result, ...rest } = event;
      parts = splitResult(encodeJson(result), resultPartBytes(maxPayload));
      payload = encodeJson({ ...rest, result_parts: parts.length });
    }
    const msgID = `${this.id}:status:${event.status}:${event.timestamp}:${event.progress ? 'p' : ''}`;
    this.statusChain = this.statusChain.then(async () => {
      for (const [n, part] of parts.entries()) {
        await this.publishUntilStored(this.deps.subjects.executionResultPart(this.id, n), part, `${this.id}:result:${n}`, event.status);
      }
      await this.publishUntilStored(subject, payload, msgID, event.status);
    });
  }

  /** Publishes to JetStream, retrying until the stream has it (or the worker is going away). */
  private async publishUntilStored(subject: string, payload: Uint8Array, msgID: string, status: ExecutionStatus): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const startedAt = performance.now();
      try {
        await publishTraced(this.deps.js, subject, payload, { msgID }, this.trace.ctx);
        this.deps.outage.succeeded(startedAt);
        return;
      } catch (err) {
        if (this.aborted) return;
        this.deps.outage.failed(err, startedAt);
        this.log.debug({ error: (err as Error).message, status, subject, attempt }, 'status publish failed; retrying');
        await delay(Math.min(1000, 25 * 2 ** Math.min(attempt, 6)));
      }
    }
  }

  private aborted = false;
  private finalSent = false;

  /** The worker is going away without NATS: stop retrying publishes. */
  abort(): void {
    this.aborted = true;
    this.shipper.abort();
    this.shipper.close();
  }
}

async function executable(file: string): Promise<boolean> {
  return access(file, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** The script as it is run: without a byte order mark (Windows editors save one), which would hide its
 *  shebang from the system and have /bin/sh run it. */
function scriptText(script: string): string {
  return script.startsWith('\uFEFF') ? script.slice(1) : script;
}

/** The script's first line when it is a shebang (`#!…`, without its newline). */
function shebang(script: string): string | undefined {
  return script.startsWith('#!') ? script.slice(0, Math.max(2, script.indexOf('\n'))) : undefined;
}

/** Why a script cannot run by its shebang, found before it is tried: a `#!` naming no interpreter (the
 *  kernel refuses it), or one ending in \r (Windows line endings); none for any other. */
function unrunnableShebang(script: string): string | undefined {
  const line = shebang(script);
  if (line === undefined) return undefined;
  if (line.slice(2).trim() === '') {
    return `cannot run the script: its first line "${line.trim()}" names no interpreter; write the interpreter's path after #! (#!/bin/sh), or leave the line out to run the script with /bin/sh`;
  }
  if (!line.endsWith('\r')) return undefined;
  return `cannot run the script: it has Windows line endings (CRLF), so its first line asks for "${line.slice(2, -1).trim()}\\r"; convert it to LF (dos2unix)`;
}

/** Whether arrays and objects nest more than `limit` levels (without recursion: it is the depth). */
function deeperThan(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [v, depth] = item;
    if (v === null || typeof v !== 'object') continue;
    if (depth === limit) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}
