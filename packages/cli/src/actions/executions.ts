// `hodei executions list|show|cancel`.
import type { Command } from 'commander';
import { Execution } from '@hodei/types';
import { context, exitField } from '../context.js';
import { labelsText, pageNote, statusText, when } from '../output.js';
import { formatBytes, formatDuration } from '../parse.js';
import { resolveAnyWorker, resolveExecution, resolveJob } from '../resources.js';

export const list = async (f: { job?: string; status?: string; worker?: string; limit: number; offset?: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const job_id = f.job ? await resolveJob(client, f.job) : undefined;
  const worker_id = f.worker ? await resolveAnyWorker(client, f.worker) : undefined;
  const { items, total } = await client.list('worker-manager', '/api/v1/executions', Execution, { job_id, worker_id, status: f.status, limit: f.limit, offset: f.offset });
  if (out.json) return out.printJson(items);
  out.table(
    ['ID', 'NAME', 'STATUS', 'EXIT', 'ATTEMPT', 'STARTED', 'DURATION', 'LINES'],
    items.map((e) => [
      e.id,
      e.name,
      statusText(out.out, e.status),
      e.exit_code !== null ? String(e.exit_code) : (e.signal ?? '-'),
      String(e.attempt),
      when(e.started_at),
      formatDuration(e.duration_ms),
      String(e.log_lines),
    ]),
    'no executions',
  );
  pageNote(out, { shown: items.length, total, offset: f.offset }, 'executions');
};

export const show = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const e = await client.get('worker-manager', `/api/v1/executions/${await resolveExecution(client, id)}`, Execution);
  if (out.json) return out.printJson(e);
  const pairs: [string, string][] = [
    ['id', e.id],
    ['name', e.name],
    ['job', e.job_id ?? '-'],
    ['status', statusText(out.out, e.status)],
    ['exit code', exitField(e.status, e.exit_code, e.signal)],
  ];
  if (e.message) pairs.push(['message', e.message]);
  if (e.waiting) pairs.push(['waiting', e.waiting]);
  if (e.progress)
    pairs.push([
      'progress',
      `${e.progress.percent === null ? '?' : e.progress.percent.toFixed(0)}%` +
        (e.progress.current !== null && e.progress.total !== null ? ` ${e.progress.current}/${e.progress.total}` : '') +
        (e.progress.message ? ` ${e.progress.message}` : ''),
    ]);
  pairs.push(
    ['worker', e.worker_id ?? '-'],
    ['attempt', String(e.attempt) + (e.retry_of ? ` (retry of ${e.retry_of})` : '')],
    ['priority', String(e.priority)],
    ['command', e.spec.command ?? (e.spec.script ? `script (${e.spec.script.split('\n').length} lines)` : '-')],
    ['resources', `${e.spec.resources.cpu_cores} cpu, ${formatBytes(e.spec.resources.memory_bytes)}`],
    ['labels', labelsText(e.spec.labels)],
    ['created', when(e.created_at)],
    ['started', when(e.started_at)],
    ['finished', when(e.finished_at)],
    ['duration', formatDuration(e.duration_ms)],
    ['log lines', String(e.log_lines)],
  );
  out.fields(pairs);
};

export const cancel = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const executionId = await resolveExecution(client, id);
  const e = await client.send('worker-manager', 'POST', `/api/v1/executions/${executionId}/cancel`, Execution);
  if (out.json) return out.printJson(e);
  out.line(`cancel requested for execution ${executionId}`);
};
