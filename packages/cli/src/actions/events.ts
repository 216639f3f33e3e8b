// `hodei events -f`: every execution status change, live.
import type { Command } from 'commander';
import { z } from '@hodei/types';
import { context } from '../context.js';
import { CliError } from '../errors.js';
import { clock, exitWhenWritten, statusText } from '../output.js';
import { readSse } from '../sse.js';

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
  const res = await client.fetch('worker-manager', 'GET', path, { headers: { accept: 'text/event-stream' }, timeoutMs: null });
  if (!res.ok || !res.body) {
    await client.request('worker-manager', 'GET', path, null);
    throw new CliError(`the worker-manager answered ${res.status} to the event stream`);
  }
  if (!out.json) out.note(out.err('gray', 'streaming events (Ctrl-C to stop)'));
  process.on('SIGINT', () => exitWhenWritten(0));
  for await (const ev of readSse(res.body)) {
    if (ev.event === 'connected') continue;
    let data: unknown;
    try {
      data = JSON.parse(ev.data);
    } catch {
      continue;
    }
    if (out.json) {
      out.line(JSON.stringify(data));
      continue;
    }
    const e = JobEvent.safeParse(data);
    if (!e.success) continue;
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
  throw new CliError('the event stream closed', 2);
};
