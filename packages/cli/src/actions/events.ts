// `hodei events -f`: every execution status change, live.
import type { Command } from 'commander';
import { z } from '@hodei/types';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { isAbort } from '../http.js';
import { GIVE_UP_MS, isOutage } from '../outage.js';
import { clock, exitWhenWritten, statusText, visible, type Output } from '../output.js';
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

export const events = async (_f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const path = '/api/v1/events/stream';
  process.on('SIGINT', () => exitWhenWritten(0));
  let downSince: number | null = null;
  // said once per outage: the stream broke, or the worker-manager is away or answers 503
  let noted = false;
  for (let connected = 0, tries = 0; ; tries++) {
    let res: Response;
    try {
      res = await client.fetch('worker-manager', 'GET', path, { headers: { accept: 'text/event-stream' }, timeoutMs: null });
      if (!res.ok) throw await client.errorOf('worker-manager', 'GET', path, res);
    } catch (err) {
      if (!isOutage(err) || (downSince !== null && Date.now() - downSince > GIVE_UP_MS)) throw err;
      downSince ??= Date.now();
      if (!noted) out.note(out.err('yellow', `${err.message}; retrying…`));
      noted = true;
      await pause(Math.min(2000, 200 * tries));
      continue;
    }
    if (!res.body) throw new CliError(`the worker-manager answered ${res.status} to the event stream, without a body`);
    if (connected++ === 0) out.note(out.err('gray', 'streaming events (Ctrl-C to stop)'));
    // status events have no replay: what changed while the stream was down is not shown
    else out.note(out.err('yellow', 'event stream back; changes while it was down are not shown'));
    downSince = null;
    noted = false;
    tries = 0;
    try {
      for await (const ev of readSse(res.body)) printEvent(out, ev);
    } catch (err) {
      if (isAbort(err)) throw err;
    }
    out.note(out.err('yellow', 'the event stream broke; reconnecting…'));
    noted = true;
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
      visible(d.message ?? '', false),
    ]
      .filter(Boolean)
      .join('  '),
  );
}
