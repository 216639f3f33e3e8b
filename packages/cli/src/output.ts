// Terminal output: colours (only when allowed), local timestamps, aligned tables, key/value views.
import { fstatSync } from 'node:fs';
import type { CliConfig } from './config.js';

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90, bold: 1, dim: 2 } as const;
export type Colour = keyof typeof CODES;

export type Paint = (c: Colour, text: string) => string;

/** fd 1 and fd 2 are the same pipe or file (`hodei … 2>&1 | less`). */
function oneOutput(): boolean {
  try {
    // bigint: on Node 20 a plain fstatSync of a socket (stdio of a spawned child) here left the
    // ESM resolver unable to find the dependencies of @nats-io/* for `hodei worker`
    const out = fstatSync(1, { bigint: true });
    const err = fstatSync(2, { bigint: true });
    return out.dev === err.dev && out.ino === err.ino;
  } catch {
    return false;
  }
}

/**
 * Where hodei writes what belongs on stderr: stderr, or stdout when both are one pipe. Two writers
 * on one pipe keep no order between them once the pipe is full: an `[ERR]` line overtook the
 * `[OUT]` lines printed before it, as soon as the reader was slower than hodei.
 */
export const stderr: NodeJS.WriteStream = oneOutput() ? process.stdout : process.stderr;
export const painter = (enabled: boolean): Paint => (c, text) => (enabled ? `\x1b[${CODES[c]}m${text}\x1b[0m` : text);

const VISIBLE = /\x1b\[[0-9;]*m/g;
const width = (s: string) => s.replace(VISIBLE, '').length;

const CONTROL = /\x1b\[[0-9;:]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

/**
 * A job's line, or text the services sent (a message, a description, an error), as the terminal
 * should show it: colours (SGR sequences) kept where colour is on, any other control character shown (`^[`, `^M`, `\x9b`) instead of obeyed, so that output cannot
 * retitle the terminal, clear it or move the cursor. `--raw` prints lines untouched (and a last
 * line the job ended without a newline without one).
 */
export function visible(line: string, colour: boolean): string {
  return line.replace(CONTROL, (c) => {
    if (c.length > 1) return colour ? c : '';
    const code = c.charCodeAt(0);
    return code < 0x20 ? `^${String.fromCharCode(code + 0x40)}` : code === 0x7f ? '^?' : `\\x${code.toString(16)}`;
  });
}

const LAYOUT = /[\t\n]/g;

/**
 * Text the services sent inside a line hodei lays out (a field, a table cell, an error): as `visible`,
 * and a tab or a newline shown too (`^I`, `^J`), so that a label value or a description holding one
 * does not break the layout. A job's log lines keep their tabs.
 */
export function inline(text: string, colour: boolean): string {
  return visible(text, colour).replace(LAYOUT, (c) => `^${String.fromCharCode(c.charCodeAt(0) + 0x40)}`);
}

/** `HH:MM:SS.mmm` of an ISO timestamp, in local time. */
export function clock(iso: string | Date): string {
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) return '--:--:--.---';
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** `2026-11-22 05:07:01` local, or `-`. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

const STATUS_COLOURS: Record<string, Colour> = {
  completed: 'green', running: 'cyan', queued: 'yellow', pending: 'gray', failed: 'red', timed_out: 'red',
  lost: 'magenta', cancelled: 'yellow', online: 'green', offline: 'red', stopped: 'gray', exited: 'gray',
  draining: 'yellow', starting: 'yellow', scheduled: 'green', paused: 'yellow', active: 'green', archived: 'gray',
};
export const statusText = (paint: Paint, status: string) => paint(STATUS_COLOURS[status] ?? 'bold', status);

/** Under a list: how much of it was shown, or that --offset went past its end. */
export function pageNote(out: Output, page: { shown: number; total: number | null; offset?: number }, noun: string): void {
  const { shown, total, offset = 0 } = page;
  if (total === null || total <= shown) return;
  if (shown === 0 && offset >= total) out.note(out.err('gray', `--offset ${offset} is past the end: there are ${total} ${noun}`));
  else out.note(out.err('gray', `${shown} of ${total} ${noun} (use --limit / --offset for more)`));
}

/**
 * Exits once everything written to stdout and stderr has left the process. Output to a pipe is
 * written asynchronously: process.exit() alone cut `hodei logs … | grep` off at 64 KiB.
 */
export function exitWhenWritten(code: number, waitMs?: number): void {
  if (waitMs !== undefined) setTimeout(() => process.exit(code), waitMs);
  let open = 2;
  let failed: [NodeJS.WriteStream, NodeJS.ErrnoException] | null = null;
  const written = (stream: NodeJS.WriteStream) => (err?: NodeJS.ErrnoException | null) => {
    if (err && err.code !== 'EPIPE' && !outputIsOnlyALog) failed ??= [stream, err];
    if (--open > 0) return;
    // a write that failed (a full disk) before the end: the output is not whole, the exit must not say 0
    if (failed) return outputFailed(...failed);
    process.exit(code);
  };
  process.stdout.write('', written(process.stdout));
  process.stderr.write('', written(process.stderr));
}

/**
 * Resolves once stdout and stderr have taken what was written to them, or undefined when they have
 * already. A reader slower than the job (`hodei run … | less`) is waited for, as `cat` would: without
 * this, what it had not read yet piled up in hodei's memory (a 50 MB log held 170 MB).
 */
export function backlog(): Promise<void> | undefined {
  const full = [process.stdout, process.stderr].filter((s) => s.writableNeedDrain && !s.destroyed);
  if (full.length === 0) return undefined;
  // a reader gone instead (EPIPE) ends hodei through readerGone: this only has to stop waiting
  const emptied = (s: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => {
      const done = () => {
        s.off('drain', done).off('close', done).off('error', done);
        resolve();
      };
      s.on('drain', done).on('close', done).on('error', done);
    });
  return Promise.all(full.map(emptied)).then(() => undefined);
}

/** How long an exit hodei was told to make (a signal, a second Ctrl-C) waits for a reader that does
 *  not take what was written: a stalled one must not keep a cancelled `hodei run` alive. */
const TOLD_TO_GO_WAIT_MS = 2000;

/** Exit as soon as the output is written, or after TOLD_TO_GO_WAIT_MS without it. */
export const exitWhenTold = (code: number): void => exitWhenWritten(code, TOLD_TO_GO_WAIT_MS);

let onReaderGone: (() => Promise<number>) | null = null;
let readerWentAway = false;
let outputIsOnlyALog = false;

/**
 * For a command that runs until told to stop and whose output is only its log (`hodei worker`):
 * its reader going away (`| head -1`, a supervisor that died) or a failed write drops what it writes
 * from then on, and the command goes on. Ending it there cut the worker's running jobs short.
 */
export function outputOnlyALog(): void {
  outputIsOnlyALog = true;
}

/** While set, what to do when the reader of hodei's output goes away (`hodei run … | head`); it returns the exit code. */
export function whenReaderGone(fn: (() => Promise<number>) | null): void {
  onReaderGone = fn;
}

/** Exit code of a command whose reader went away: 128 + SIGPIPE, as a shell reports `yes | head`. */
export const READER_GONE_EXIT = 141;

/** stdout or stderr is a closed pipe: exit 141, after the current command's clean-up if it set one
 *  (`exitCode`, when given, wins over the clean-up's). */
export function readerGone(exitCode?: number): void {
  if (readerWentAway || outputIsOnlyALog) return;
  readerWentAway = true;
  const fn = onReaderGone;
  if (!fn) process.exit(exitCode ?? READER_GONE_EXIT);
  void fn().then(
    (code) => process.exit(exitCode ?? code),
    () => process.exit(1),
  );
}

/** A write to stdout or stderr failed otherwise (a full disk, an I/O error): what hodei prints cannot
 *  be whole, so it says so (on stderr, if that still works) and goes as when its reader is gone, exit 1. */
export function outputFailed(stream: NodeJS.WriteStream, err: NodeJS.ErrnoException): void {
  if (readerWentAway || outputIsOnlyALog) return;
  if (stream === process.stdout && !process.stderr.errored) {
    process.stderr.write(`hodei: cannot write to stdout: ${err.code === 'ENOSPC' ? 'no space left on device' : err.message}\n`);
  }
  readerGone(1);
}

export class Output {
  readonly out: Paint;
  readonly err: Paint;
  constructor(readonly config: CliConfig) {
    this.out = painter(config.color.stdout);
    this.err = painter(config.color.stderr);
  }

  get json(): boolean {
    return this.config.json;
  }

  line(text = ''): void {
    process.stdout.write(`${text}\n`);
  }

  note(text: string): void {
    stderr.write(`${visible(text, this.config.color.stderr)}\n`);
  }

  printJson(value: unknown): void {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Columns padded to the widest cell; the header in bold on a terminal. */
  table(headers: string[], rows: string[][], empty = '(none)'): void {
    if (rows.length === 0) {
      this.note(empty);
      return;
    }
    rows = rows.map((r) => r.map((c) => inline(c, this.config.color.stdout)));
    const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => width(r[i] ?? ''))));
    const fmt = (cells: string[]) =>
      cells
        .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - width(c))))
        .join('  ')
        .trimEnd();
    this.line(this.out('bold', fmt(headers)));
    for (const r of rows) this.line(fmt(r));
  }

  /** Aligned `key  value` lines. */
  fields(pairs: [string, string][], stream: 'stdout' | 'stderr' = 'stdout', indent = ''): void {
    const w = Math.max(...pairs.map(([k]) => k.length));
    const paint = stream === 'stdout' ? this.out : this.err;
    const text = pairs.map(([k, v]) => `${indent}${paint('gray', k.padEnd(w))}  ${inline(v, this.config.color[stream])}`).join('\n');
    (stream === 'stdout' ? process.stdout : stderr).write(`${text}\n`);
  }
}

export const labelsText = (labels: Record<string, string> | undefined | null) =>
  Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-';
