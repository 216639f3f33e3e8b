// `hodei run`: create a job, execute it, stream its output live and exit with its exit code.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { Execution, Job, retryDue, z } from '@hodei/types';
import { context, exitCodeFor, exitField, exitNote, type Ctx } from '../context.js';
import { ApiError, CliError, UnreachableError, UsageError } from '../errors.js';
import { followLogs, type Completed } from '../follow.js';
import { cancelWhenAbandoned, holdSignals, SIGNAL_EXIT } from '../abandon.js';
import { GIVE_UP_MS, whileNothingDone } from '../outage.js';
import { JsonLines } from '../json-lines.js';
import { backlog, exitWhenTold, exitWhenWritten, statusText } from '../output.js';
import { storedLines } from '../stored.js';
import { formatDuration } from '../parse.js';
import { LogPrinter } from '../printer.js';
import { ProgressBar } from '../progress.js';

interface RunFlags {
  file?: string;
  name?: string;
  command?: string;
  script?: string;
  arg?: string[];
  env?: Record<string, string>;
  cpu?: number;
  memory?: number;
  timeout?: number;
  priority?: number;
  label?: Record<string, string>;
  tag?: string[];
  retries?: number;
  workdir?: string;
  description?: string;
  detach?: boolean;
  timestamps: boolean;
  raw?: boolean;
}

export const ExecutionRef = Execution.pick({ id: true, status: true });
const MAX_SCRIPT_CHARS = 1024 * 1024;
const Attempt = Execution.pick({ id: true, attempt: true, retry_of: true });

/** How long a due retry may take to appear: the end of an attempt can be read before its retry is recorded. */
const RETRY_APPEARS_MS = 10_000;

/** The execution that retries `executionId` (a failed or lost attempt with retries left), once worker-manager recorded it. */
async function retryOf(c: Ctx, jobId: string, executionId: string): Promise<z.infer<typeof Attempt> | undefined> {
  for (const started = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    const { items } = await c.client.list('worker-manager', '/api/v1/executions', Attempt, { job_id: jobId, limit: 20 });
    const retry = items.find((e) => e.retry_of === executionId);
    if (retry || Date.now() - started > RETRY_APPEARS_MS) return retry;
  }
}

/** The job file (if any) with the flags laid over it. */
export async function buildJobBody(flags: RunFlags): Promise<Record<string, unknown>> {
  if (flags.command !== undefined && flags.script !== undefined) throw new UsageError('give --command or --script, not both');
  let base: Record<string, unknown> = {};
  if (flags.file) {
    const text = await readText(flags.file);
    // YAML is loaded only for a job file: a plain run does not wait for it
    const { parse: parseYaml } = await import('yaml');
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new CliError(`${flags.file}: ${(err as Error).message.split('\n')[0]?.replace(/:$/, '')}`);
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new CliError(`${flags.file}: a job file is a YAML mapping (name:, command:, …)`);
    try {
      JSON.stringify(doc);
    } catch {
      throw new CliError(`${flags.file}: a YAML alias refers to a node that contains it`);
    }
    base = doc as Record<string, unknown>;
  }
  const body: Record<string, unknown> = { ...base };
  if (flags.command !== undefined) {
    if (flags.command === '') throw new UsageError('--command is empty: nothing to run');
    body.command = flags.command;
    delete body.script;
  }
  if (flags.script !== undefined) {
    const script = await readText(flags.script);
    const what = flags.script === '-' ? 'the script on stdin' : flags.script;
    if (script === '') throw new CliError(`${what} is empty: nothing to run`);
    // the API's limit, in characters; over it the request was refused only as a body too large
    if (script.length > MAX_SCRIPT_CHARS)
      throw new CliError(`${what} holds ${script.length} characters; a script may hold up to ${MAX_SCRIPT_CHARS} (1 MiB): run a larger one from a file on the worker`);
    body.script = script;
    delete body.command;
  }
  if (flags.name !== undefined) body.name = flags.name;
  if (flags.description !== undefined) body.description = flags.description;
  if (flags.arg) body.args = flags.arg;
  if (flags.env) body.env = { ...(base.env as Record<string, string> | undefined), ...flags.env };
  if (flags.label) body.labels = { ...(base.labels as Record<string, string> | undefined), ...flags.label };
  if (flags.tag) body.tags = flags.tag;
  if (flags.cpu !== undefined || flags.memory !== undefined) {
    const r = { ...(base.resources as Record<string, number> | undefined) };
    if (flags.cpu !== undefined) r.cpu_cores = flags.cpu;
    if (flags.memory !== undefined) r.memory_bytes = flags.memory;
    body.resources = r;
  }
  if (flags.timeout !== undefined) {
    if (!(flags.timeout > 0)) throw new UsageError('--timeout must be longer than 0 (leave it out for no timeout)');
    body.timeout_seconds = Math.max(1, Math.ceil(flags.timeout));
  }
  if (flags.priority !== undefined) body.priority = flags.priority;
  if (flags.retries !== undefined) body.max_retries = flags.retries;
  if (flags.workdir !== undefined) {
    if (!flags.workdir.startsWith('/'))
      throw new UsageError(`--workdir must be an absolute path: it is taken on the worker, whose own directory is not yours (/srv/app, not ${flags.workdir})`);
    body.working_dir = flags.workdir;
  }
  if (body.command === undefined && body.script === undefined)
    throw new (flags.file ? CliError : UsageError)('nothing to run: give --command "…" or --script FILE (or a job file with command: or script:)');
  if (body.name === undefined) body.name = defaultName(flags, body);
  return body;
}

/** A word as /bin/sh reads it back unchanged: bare when it is plain, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function defaultName(flags: RunFlags, body: Record<string, unknown>): string {
  if (flags.script && flags.script !== '-') return basename(flags.script);
  if (typeof body.command === 'string') return body.command.trim().split(/\s+/)[0]?.slice(0, 60) || 'job';
  return 'script';
}

const READ_ERRORS: Record<string, string> = { ENOENT: 'no such file', EISDIR: 'it is a directory', EACCES: 'permission denied' };

/** A script or job file's text; a binary file (a NUL byte: a compiled program, an archive) is refused by name. */
async function readText(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    if (file === '-') {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      bytes = Buffer.concat(chunks);
    } else bytes = await readFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError(`cannot read ${file}: ${READ_ERRORS[e.code ?? ''] ?? e.message}`);
  }
  if (bytes.includes(0)) throw new CliError(`${file === '-' ? 'stdin' : file} is a binary file, not a script or a job file (it holds a NUL byte)`);
  return bytes.toString('utf8');
}

/** What the summary shows of a result longer than this: the start, and how to get it whole. */
const RESULT_CHARS = 200;

/** The JSON the job wrote to $HODEI_RESULT_FILE: none, its value, or why there is none to use. */
type Result = { written: false } | { written: true; value: unknown } | { written: true; error: string };

async function readResult({ client }: Ctx, executionId: string): Promise<Result> {
  try {
    const { data } = await client.request('worker-manager', 'GET', `/api/v1/executions/${executionId}/result`, null, { timeoutMs: 5000 });
    return { written: true, value: data };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { written: false };
    if (err instanceof ApiError && err.status === 422) return { written: true, error: `unusable: ${err.fieldErrors.find((e) => e.path === 'result')?.message ?? err.message}` };
    return { written: true, error: `could not be read: ${(err as Error).message}` };
  }
}

/** The result on one summary line (the start of a long one); null when the job wrote none. */
function resultLine(r: Result, executionId: string): string | null {
  if (!r.written) return null;
  if ('error' in r) return r.error;
  const text = JSON.stringify(r.value);
  return text.length <= RESULT_CHARS ? text : `${text.slice(0, RESULT_CHARS)}… (whole: hodei jobs results ${executionId})`;
}

/** `--json`'s `result` (absent when the job wrote none) or `result_error` (when it cannot be used). */
function resultFields(r: Result): Record<string, unknown> {
  if (!r.written) return {};
  return 'error' in r ? { result_error: r.error } : { result: r.value };
}

/** Create + execute + follow. Returns the exit code. */
export async function runJob(c: Ctx, body: Record<string, unknown>, flags: Pick<RunFlags, 'detach' | 'timestamps' | 'raw'>): Promise<number> {
  const { client, out, config } = c;
  // Ctrl-C, SIGTERM or SIGHUP before there is an execution to cancel is acted on once there is one (--detach: as ever, hodei just stops)
  const early = flags.detach ? null : holdSignals();
  let job: Job;
  let execution: z.infer<typeof ExecutionRef>;
  try {
    job = await client.send('orchestrator', 'POST', '/api/v1/jobs', Job, body);
    // the job was only ever meant to run now: it is not left behind, never run
    const notRun = async (message: string, code: number, details?: string[]) => {
      const removed = await client.send('orchestrator', 'DELETE', `/api/v1/jobs/${job.id}`, null).then(
        () => 'removed',
        () => `left as ${job.id}`,
      );
      return new CliError(`${message} (the job was not run; ${removed})`, code, details);
    };
    if (early?.signal) throw await notRun(early.signal === 'SIGINT' ? 'interrupted' : `got ${early.signal}`, SIGNAL_EXIT[early.signal]);
    // a 503 with Retry-After created nothing: the same job is sent again, for up to a minute
    const waitNote = (reason: string) => out.note(out.err('yellow', `${reason}; retrying for up to ${GIVE_UP_MS / 1000}s…`));
    const execute = () => {
      // a signal while it waits ends the waiting, as it would the request
      if (early?.signal) throw new CliError(early.signal === 'SIGINT' ? 'interrupted' : `got ${early.signal}`, SIGNAL_EXIT[early.signal]);
      return client.send('worker-manager', 'POST', '/api/v1/execute', ExecutionRef, { job_id: job.id });
    };
    execution = await whileNothingDone(execute, waitNote).catch(async (err: unknown) => {
      if (err instanceof CliError) throw await notRun(err.message, err.exitCode, err.details);
      throw err;
    });
  } finally {
    early?.release();
  }

  if (flags.detach) {
    if (out.json) out.printJson({ job: job.id, execution: execution.id, name: job.name, status: execution.status });
    else {
      out.line(`job        ${job.id}`);
      out.line(`execution  ${execution.id}`);
      out.note(`follow it with: hodei logs -f ${execution.id}`);
    }
    return 0;
  }

  const started = Date.now();
  const bar = !out.json && !flags.raw && config.tty.stderr ? new ProgressBar(process.stderr, out.err, started) : null;
  const printer = new LogPrinter(out, { timestamps: flags.timestamps, raw: flags.raw === true, bar });
  // --json: the lines are read back from the worker-manager once the job has ended, not held meanwhile
  let lastSeq = 0;
  let current = { id: execution.id, attempt: 1 };

  let interrupts = 0;
  const cancel = () =>
    client
      .send('worker-manager', 'POST', `/api/v1/executions/${current.id}/cancel`, null)
      .catch((err: Error) => printer.note(out.err('red', `could not cancel: ${err.message}`)));
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      printer.note(out.err('yellow', `cancelling execution ${current.id}… (Ctrl-C again to detach)`));
      void cancel();
      return;
    }
    bar?.stop();
    out.note(`detached; the cancel of execution ${current.id} goes on without hodei: hodei logs -f ${current.id}`);
    exitWhenTold(130);
  };
  process.on('SIGINT', onSigint);
  const abandoned = cancelWhenAbandoned(out, {
    what: () => `execution ${current.id}`,
    cancel: () => client.request('worker-manager', 'POST', `/api/v1/executions/${current.id}/cancel`, null, { timeoutMs: 5000 }),
    beforeNote: () => bar?.stop(),
  });
  if (early?.signal === 'SIGINT') onSigint();
  else if (early?.signal) abandoned.signalled(early.signal);

  let done: Completed;
  try {
    for (;;) {
      done = await followLogs(client, {
        executionId: current.id,
        onLine: (l) => {
          if (out.json) {
            printer.count++;
            lastSeq = l.seq;
          } else printer.print(l);
        },
        flush: () => printer.flush(),
        onWaiting: (reason) => printer.note(out.err('yellow', `waiting: ${reason}`)),
        onDown: (reason) => printer.note(out.err('yellow', `${reason}; retrying…`)),
        onBack: () => printer.note(out.err('yellow', 'log stream back')),
      });
      const retry = retryDue(done.status, current.attempt, job.max_retries) ? await retryOf(c, job.id, current.id) : undefined;
      if (!retry) break;
      printer.note(out.err('yellow', `attempt ${current.attempt} ${done.status}${exitNote(done.status, done.exit_code, done.signal)}; retried as execution ${retry.id} (attempt ${retry.attempt} of ${job.max_retries + 1})`));
      current = { id: retry.id, attempt: retry.attempt };
      lastSeq = 0;
      printer.count = 0;
      // Ctrl-C came as the attempt ended: the retry is cancelled too
      if (interrupts > 0) await cancel();
    }
  } catch (err) {
    // the execution goes on without hodei: the user must know it, and how to find it again
    if (err instanceof UnreachableError) throw new CliError(`${err.message}; execution ${current.id} may still run: follow it with hodei logs -f ${current.id}`, err.exitCode);
    throw err;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
    abandoned.release();
  }

  // told to go (SIGTERM, SIGHUP, its reader gone) as the execution ended: the cancel under way exits
  // with that code; a summary begun now was cut off by it (seen: the rule line alone)
  if (abandoned.code !== null) return abandoned.code;
  const lines = printer.count;
  const code = exitCodeFor(done.status, done.exit_code, done.signal);
  // The job is over: a Ctrl-C while its summary is read back (its result, --json's lines) and written
  // (to a slow reader) changes nothing; a second one stops there. Without this, it killed hodei
  // mid-summary, exit 130 for a job that had completed.
  let summarized = false;
  let interruptsAfter = 0;
  process.on('SIGINT', () => {
    if (summarized || ++interruptsAfter > 1) exitWhenWritten(code);
  });
  const duration = done.duration_ms ?? null; // null: it never started (cancelled while queued)
  if (out.json) {
    const head = {
      job: job.id,
      execution: current.id,
      attempt: current.attempt,
      name: job.name,
      status: done.status,
      exit_code: done.exit_code ?? null,
      signal: done.signal ?? null,
      duration_ms: duration,
      line_count: lines,
      ...resultFields(await readResult(c, current.id)),
    };
    let json: JsonLines | null = lastSeq === 0 ? new JsonLines(head) : null;
    const onDown = (reason: string) => out.note(out.err('yellow', `${reason}; retrying…`));
    for await (const page of storedLines(client, current.id, lastSeq, onDown)) {
      // begun with the first page: a worker-manager that does not answer leaves nothing half-printed
      json ??= new JsonLines(head);
      for (const l of page) json.add(l);
      const written = backlog();
      if (written) await written;
    }
    json?.end();
  } else {
    const result = resultLine(await readResult(c, current.id), current.id);
    out.note(out.err('gray', '─'.repeat(40)));
    const pairs: [string, string][] = [
      ['name', job.name],
      ['job', job.id],
      ['execution', current.id],
      ['status', statusText(out.err, done.status)],
      ['exit code', exitField(done.status, done.exit_code, done.signal)],
      ['lines', String(lines)],
      ['duration', duration === null ? '-' : formatDuration(duration)],
    ];
    if (current.attempt > 1) pairs.splice(3, 0, ['attempt', `${current.attempt} of ${job.max_retries + 1}`]);
    if (done.message && !/^(exited with code -?\d+|killed by signal \w+)$/.test(done.message)) pairs.push(['message', done.message]);
    if (result !== null) pairs.push(['result', result]);
    out.fields(pairs, 'stderr');
  }
  summarized = true;
  return code;
}

export const run = async (words: string[], flags: RunFlags, cmd: Command) => {
  const c = context(cmd);
  if (words.length) {
    if (flags.command !== undefined || flags.script !== undefined) throw new UsageError('give the command after -- or with --command / --script, not both');
    flags.command = words.map(shellWord).join(' ');
  }
  const body = await buildJobBody(flags);
  process.exitCode = await runJob(c, body, flags);
};
