// `hodei logs`: an execution's (or a job's latest execution's) output, past or live.
import type { Command } from 'commander';
import { LogsResponse, type LogLine } from '@hodei/types';
import { context, exitCodeFor, exitNote } from '../context.js';
import { ApiError, CliError, CutOffError } from '../errors.js';
import { followLogs } from '../follow.js';
import { matcher, serverPattern } from '../grep.js';
import { JsonLines } from '../json-lines.js';
import { untilAnswered } from '../outage.js';
import { backlog, statusText } from '../output.js';
import { formatDuration } from '../parse.js';
import { LogPrinter } from '../printer.js';
import { resolveExecutionOrJob } from '../resources.js';

interface LogsFlags {
  follow?: boolean;
  tail?: number;
  sinceSeq?: number;
  stream?: 'stdout' | 'stderr';
  grep?: string;
  timestamps: boolean;
  raw?: boolean;
}

export const logs = async (id: string, flags: LogsFlags, cmd: Command) => {
  const { client, out } = context(cmd);
  const printer = new LogPrinter(out, { timestamps: flags.timestamps, raw: flags.raw === true, bar: null });
  // a follower waits out a service restarting, as it does once it streams
  const onDown = (reason: string) => printer.note(out.err('yellow', `${reason}; retrying…`));
  const resolve = () => resolveExecutionOrJob(client, id);
  const { executionId } = flags.follow ? await untilAnswered(resolve, onDown) : await resolve();
  const emit = (l: LogLine) => (out.json ? out.line(JSON.stringify(l)) : printer.print(l));

  const grep = matcher(flags.grep);
  if (flags.follow) {
    // the stream's tail counts every line, and --grep and --stream select from what it sends: the last N
    // lines they select are read as without -f, then followed from there
    let sinceSeq = flags.sinceSeq;
    const tailRead = flags.tail !== undefined && (flags.grep !== undefined || flags.stream !== undefined);
    if (tailRead) {
      const page = await untilAnswered(() => client.get('worker-manager', `/api/v1/executions/${executionId}/logs`, LogsResponse, logsQuery(flags, flags.sinceSeq)), onDown).catch((err: unknown) => {
        throw grepStopped(err, flags.grep);
      });
      for (const l of page.lines) emit(l);
      printer.flush();
      sinceSeq = page.next_seq;
    }
    const done = await followLogs(client, {
      executionId,
      sinceSeq,
      tail: tailRead ? undefined : flags.tail,
      onLine: (l) => {
        if (flags.stream && l.stream !== flags.stream) return;
        if (!grep(l.line)) return;
        emit(l);
      },
      flush: () => printer.flush(),
      onWaiting: (reason) => printer.note(out.err('yellow', `waiting: ${reason}`)),
      waitFromStart: true,
      onDown,
      onBack: () => printer.note(out.err('yellow', 'log stream back')),
    });
    // --json: how it ended, as the last line (no seq: `select(.seq)` keeps the log lines)
    const { status, exit_code = null, signal = null, message = null, duration_ms = null } = done;
    if (out.json) out.line(JSON.stringify({ execution_id: executionId, status, exit_code, signal, message, duration_ms }));
    else
      out.note(
        out.err('gray', '── ') +
          `${statusText(out.err, done.status)}${exitNote(done.status, done.exit_code, done.signal)}` +
          (done.duration_ms !== null && done.duration_ms !== undefined ? ` in ${formatDuration(done.duration_ms)}` : ''),
      );
    // followed to its end, as `run` would have: a detached run is waited for with its own code
    process.exitCode = exitCodeFor(done.status, done.exit_code, done.signal);
    return;
  }

  // each page printed as it comes: the first lines of a long log show at once, and memory stays flat
  // the --json object is begun with the first page: an answer that fails leaves nothing half-printed
  let json: JsonLines | null = null;
  let since = flags.sinceSeq;
  const limit = 10_000;
  for (;;) {
    const page = await client.get('worker-manager', `/api/v1/executions/${executionId}/logs`, LogsResponse, logsQuery(flags, since, limit)).catch((err: unknown) => {
      throw grepStopped(err, flags.grep);
    });
    if (out.json) json ??= new JsonLines({ execution_id: executionId });
    for (const l of page.lines) {
      if (json) json.add(l);
      else printer.print(l);
      const written = backlog();
      if (written) await written;
    }
    printer.flush();
    if (flags.tail !== undefined || page.lines.length < limit) break;
    // since_seq is exclusive: continue after the last line of this page
    since = page.lines[page.lines.length - 1]?.seq ?? since;
  }
  json?.end();
};

/** GET …/logs's query for the lines the flags select after `since`, `limit` a page. */
function logsQuery(flags: LogsFlags, since: number | undefined, limit = 10_000) {
  return {
    since_seq: since,
    tail: flags.tail,
    stream: flags.stream,
    grep: flags.grep === undefined ? undefined : serverPattern(flags.grep),
    grep_regex: flags.grep === undefined ? undefined : 'true',
    // the API answers the last min(tail, limit) lines: a tail past one page is asked for whole
    limit: Math.max(limit, flags.tail ?? 0),
  };
}

/** The worker-manager stops a search past its time budget (HODEI_LOG_GREP_TIMEOUT_MS): with a 422
 *  naming grep before any line is sent, by closing the connection after. Either is one line in the
 *  CLI's words (its API's advice names query parameters), exit 1: the pattern is the user's to change. */
function grepStopped(err: unknown, grep: string | undefined): unknown {
  if (grep === undefined) return err;
  const advice = 'use a simpler pattern, or search fewer lines (--since-seq, --stream)';
  if (err instanceof ApiError && err.status === 422 && err.fieldErrors.some((e) => e.path === 'grep')) {
    const budget = /(\d+) ms/.exec(err.message)?.[1];
    return new CliError(`--grep: the search took longer than the worker-manager allows${budget ? ` (${budget} ms, HODEI_LOG_GREP_TIMEOUT_MS)` : ''}: ${advice}`);
  }
  if (err instanceof CutOffError)
    return new CliError(`${err.message}: the --grep search was likely stopped at the worker-manager's time limit (HODEI_LOG_GREP_TIMEOUT_MS): ${advice}`);
  return err;
}
