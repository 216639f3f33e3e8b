// `hodei events -f`: every execution status change, live.
import type { Command } from 'commander';
import { z } from '@hodei/types';
import { SIGNAL_EXIT } from '../abandon.js';
import { context } from '../context.js';
import { CliError, UnreachableError } from '../errors.js';
import { isAbort } from '../http.js';
import { isOutage, Outage } from '../outage.js';
import { clock, exitWhenTold, statusText, visible, type Output } from '../output.js';
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

export const events = async (_f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const path = '/api/v1/events/stream';
  // it cancels nothing: Ctrl-C ends it as a shell reports a command it interrupted
  process.on('SIGINT', () => exitWhenTold(SIGNAL_EXIT.SIGINT));
  // said once per outage: the stream broke, or the worker-manager is away or answers 503
  const outage = new Outage();
  let streamed = false;
  const delivering = () => {
    if (streamed && !outage.active) return;
    // status events have no replay: what changed while the stream was down is not shown
    out.note(streamed ? out.err('yellow', 'event stream back; changes while it was down are not shown') : out.err('gray', 'streaming events (Ctrl-C to stop)'));
    streamed = true;
    outage.over();
  };
  for (;;) {
    let res: Response;
    try {
      res = await client.fetch('worker-manager', 'GET', path, { headers: { accept: 'text/event-stream' }, timeoutMs: null });
      if (!res.ok) throw await client.errorOf('worker-manager', 'GET', path, res);
    } catch (err) {
      if (!isOutage(err)) throw err;
      if (!outage.active) out.note(out.err('yellow', `${err.message}; retrying…`));
      if (!outage.failed()) throw err;
      await outage.backOff();
      continue;
    }
    if (!res.body) throw new CliError(`the worker-manager answered ${res.status} to the event stream, without a body`);
    try {
      for await (const ev of readSse(res.body, delivering)) printEvent(out, ev);
    } catch (err) {
      if (isAbort(err)) throw err;
    }
    if (!outage.active) out.note(out.err('yellow', 'the event stream broke; reconnecting…'));
    if (!outage.failed()) throw new UnreachableError('worker-manager', client.config.urls['worker-manager'], 'the event stream kept breaking');
    await outage.backOff();
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
