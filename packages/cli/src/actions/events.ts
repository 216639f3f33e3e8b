// `hodei events -f`: every execution status change, live.
import type { Command } from 'commander';
import { z } from '@hodei/types';
import { context } from '../context.js';
import { CliError, UnreachableError } from '../errors.js';
import { isAbort } from '../http.js';
import { clock, exitWhenWritten, statusText, type Output } from '../output.js';
import { readSse, type SseEvent } from '../sse.js';

const JobEvent = z
  .object({
    type: z.string(),
    execution_id: z.string().nullable().optional(),
    job_id: z.string().nullable().optional(),
    status: z.string().optional(),
    message: z.string().nullable().optional(),
    timestamp: z.string().optional(),
  })
  .loose();

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long the stream may stay down (the worker-manager restarting) before hodei gives up. */
const GIVE_UP_MS = 60_000;

export const events = async (_f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const path = '/api/v1/events/stream';
  process.on('SIGINT', () => exitWhenWritten(0));
  let downSince: number | null = null;
  for (let connected = 0, tries = 0; ; tries++) {
    let res: Response;
    try {
      res = await client.fetch('worker-manager', 'GET', path, { headers: { accept: 'text/event-stream' }, timeoutMs: null });
    } catch (err) {
      if (!(err instanceof UnreachableError) || downSince === null || Date.now() - downSince > GIVE_UP_MS) throw err;
      await pause(Math.min(2000, 200 * tries));
      continue;
    }
    if (!res.ok || !res.body) {
      await client.request('worker-manager', 'GET', path, null);
      throw new CliError(`the worker-manager answered ${res.status} to the event stream`);
    }
    if (connected++ === 0) out.note(out.err('gray', 'streaming events (Ctrl-C to stop)'));
    // status events have no replay: what changed while the stream was down is not shown
    else out.note(out.err('yellow', 'event stream back; changes while it was down are not shown'));
    downSince = null;
    tries = 0;
    try {
      for await (const ev of readSse(res.body)) printEvent(out, ev);
    } catch (err) {
      if (isAbort(err)) throw err;
    }
    out.note(out.err('yellow', 'the event stream broke; reconnecting…'));
    downSince = Date.now();
    await pause(200);
  }
};

function printEvent(out: Output, ev: SseEvent): void {
  if (ev.event === 'connected') return;
  let data: unknown;
  try {
    data = JSON.parse(ev.data);
  } catch {
    return;
  }
  if (out.json) {
    out.line(JSON.stringify(data));
    return;
  }
  const e = JobEvent.safeParse(data);
  if (!e.success) return;
  const d = e.data;
  out.line(
    [
      out.out('gray', clock(d.timestamp ?? new Date())),
      d.status ? statusText(out.out, d.status.padEnd(9)) : d.type,
      d.execution_id ? `execution ${d.execution_id}` : '',
      d.job_id ? `job ${d.job_id}` : '',
      d.message ?? '',
    ]
      .filter(Boolean)
      .join('  '),
  );
}
