// `hodei schedules …`: cron (or one-off) schedules of jobs, on the scheduler.
import type { Command } from 'commander';
import { Schedule, ScheduleRun } from '@hodei/types';
import { context } from '../context.js';
import { CliError, UsageError } from '../errors.js';
import { statusText, when, type Output } from '../output.js';
import { resolveJob, resolvePipeline, resolveSchedule } from '../resources.js';

function showSchedule(out: Output, s: Schedule): void {
  out.fields([
    ['id', s.id],
    ['name', s.name ?? '-'],
    [s.job_id ? 'job' : 'pipeline', s.job_id ?? s.pipeline_id ?? '-'],
    ['cron', s.cron ?? '-'],
    ...(s.run_at ? ([['run at', when(s.run_at)]] as [string, string][]) : []),
    ['timezone', s.timezone],
    ['status', statusText(out.out, s.status)],
    ['next run', when(s.next_run_at)],
    ['last run', when(s.last_run_at)],
    ['overlap', s.overlap_policy],
    ['misfire', s.misfire_policy],
  ]);
}

export const create = async (f: { job?: string; pipeline?: string; cron?: string; at?: string; tz: string; name?: string; overlap?: string; paused?: boolean }, cmd: Command) => {
const { client, out } = context(cmd);
if (!f.job === !f.pipeline) throw new UsageError('give --job ID or --pipeline ID', ['job_id: give exactly one of --job or --pipeline']);
if (!f.cron === !f.at) throw new UsageError('give --cron EXPR or --at TIME', ['cron: give exactly one of --cron or --at']);
const body = {
  name: f.name,
  job_id: f.job ? await resolveJob(client, f.job) : undefined,
  pipeline_id: f.pipeline ? await resolvePipeline(client, f.pipeline) : undefined,
  cron: f.cron,
  run_at: f.at,
  timezone: f.tz,
  overlap_policy: f.overlap,
  enabled: f.paused ? false : undefined,
};
      const s = await client.send('scheduler', 'POST', '/api/v1/schedules', Schedule, body);
      if (out.json) return out.printJson(s);
      const firing = s.run_at
        ? `runs once at ${when(s.run_at)} (local time)${s.enabled ? '' : ', paused'}`
        : `next run ${when(s.next_run_at)} (local time; cron in ${s.timezone})`;
      out.line(`schedule ${s.id} created; ${firing}`);
    };

export const list = async (f: { job?: string; limit: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const job_id = f.job ? await resolveJob(client, f.job) : undefined;
  const { items, total } = await client.list('scheduler', '/api/v1/schedules', Schedule, { job_id, limit: f.limit });
  if (out.json) return out.printJson(items);
  out.table(
    ['ID', 'NAME', 'TARGET', 'CRON', 'TZ', 'STATUS', 'NEXT RUN', 'LAST RUN'],
    items.map((s) => [
      s.id,
      s.name ?? '-',
      s.job_id ? `job ${s.job_id.slice(0, 13)}…` : `pipeline ${(s.pipeline_id ?? '').slice(0, 13)}…`,
      s.cron ?? `at ${when(s.run_at)}`,
      s.timezone,
      statusText(out.out, s.status),
      when(s.next_run_at),
      when(s.last_run_at),
    ]),
    'no schedules',
  );
  if (total !== null && total > items.length) out.note(out.err('gray', `${items.length} of ${total} schedules`));
};

export const show = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const sid = await resolveSchedule(client, id);
  const s = await client.get('scheduler', `/api/v1/schedules/${sid}`, Schedule);
  const runs = await client.list('scheduler', `/api/v1/schedules/${sid}/runs`, ScheduleRun, { limit: 10 });
  if (out.json) return out.printJson({ ...s, runs: runs.items });
  showSchedule(out, s);
  out.line();
  out.table(
    ['SCHEDULED', 'BY', 'FIRED', 'OUTCOME', 'STARTED'],
    runs.items.map((r) => [when(r.scheduled_at), r.manual ? 'manual' : 'schedule', when(r.fired_at), r.outcome, started(r)]),
    'never fired',
  );
};

/** What a firing started, or why it started nothing. */
const started = (r: ScheduleRun) =>
  r.execution_id ? `execution ${r.execution_id}` : r.pipeline_run_id ? `pipeline run ${r.pipeline_run_id}` : (r.message ?? '-');

export const runNow = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const sid = await resolveSchedule(client, id);
  const r = await client.send('scheduler', 'POST', `/api/v1/schedules/${sid}/run`, ScheduleRun);
  if (out.json) out.printJson(r);
  else
    out.fields([
      ['firing', `${r.id} (manual)`],
      ['schedule', sid],
      ['outcome', statusText(out.out, r.outcome)],
      ...(r.execution_id ? ([['execution', r.execution_id]] as [string, string][]) : []),
      ...(r.pipeline_run_id ? ([['pipeline run', r.pipeline_run_id]] as [string, string][]) : []),
      ...(r.message ? ([['message', r.message]] as [string, string][]) : []),
    ]);
  if (r.outcome === 'skipped' || r.outcome === 'failed') throw new CliError(`the firing ${r.outcome === 'skipped' ? 'was skipped' : 'failed'}: ${r.message ?? 'no reason given'}`);
};

const setEnabled = (enabled: boolean) => async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const sid = await resolveSchedule(client, id);
  const s = await client.send('scheduler', 'PATCH', `/api/v1/schedules/${sid}`, Schedule, { enabled });
  if (out.json) return out.printJson(s);
  out.line(`schedule ${s.id} ${s.status}${s.next_run_at ? `; next run ${when(s.next_run_at)}` : ''}`);
};

export const remove = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const sid = await resolveSchedule(client, id);
  await client.send('scheduler', 'DELETE', `/api/v1/schedules/${sid}`, null);
  if (out.json) return out.printJson({ id: sid, deleted: true });
  out.line(`schedule ${sid} deleted`);
};
export const pause = setEnabled(false);
export const resume = setEnabled(true);
