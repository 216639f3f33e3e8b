// `hodei jobs …`: list, show (and watch), cancel, results, stats, cleanup.
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { CleanupResult, Execution, FINAL_STATUSES, Job, JobCancelled, Stats } from '@hodei/types';
import { confirm } from '../confirm.js';
import { context, exitCodeFor, exitNote, type Ctx } from '../context.js';
import { CliError } from '../errors.js';
import { clock, labelsText, pageNote, statusText, when, type Output } from '../output.js';
import { formatBytes, formatDuration } from '../parse.js';
import { resolveExecutionOrJob, resolveJob, resolvePipeline } from '../resources.js';
import { tickerFor } from '../ticker.js';

const firstLine = (s: string | null) => (s === null ? '-' : s.split('\n').length > 1 ? `${s.split('\n')[0]} …` : s);

export function jobRow(out: Output, j: Job): string[] {
  const last = j.last_execution;
  return [
    j.id,
    j.name,
    statusText(out.out, j.status),
    String(j.priority),
    last ? when(last.started_at ?? last.finished_at) : '-',
    last ? formatDuration(last.duration_ms) : '-',
    j.tags.join(',') || '-',
    when(j.created_at),
  ];
}
export const JOB_HEADERS = ['ID', 'NAME', 'STATUS', 'PRIO', 'LAST RUN', 'DURATION', 'TAGS', 'CREATED'];

/** `signal`: the one that killed the last execution, when it ended without a code (see lastSignal). */
export function showJob(out: Output, j: Job, signal: string | null = null): void {
  const last = j.last_execution;
  const pairs: [string, string][] = [
    ['id', j.id],
    ['name', j.name],
    ['status', statusText(out.out, j.status)],
  ];
  if (j.description) pairs.push(['description', j.description]);
  if (j.pipeline_id) pairs.push(['pipeline', j.pipeline_id]);
  if (j.command !== null) pairs.push(['command', firstLine(j.command)]);
  if (j.script !== null) pairs.push(['script', `${firstLine(j.script)} (${j.script.split('\n').length} lines)`]);
  if (j.args.length) pairs.push(['args', j.args.join(' ')]);
  if (Object.keys(j.env).length) pairs.push(['env', Object.keys(j.env).join(', ')]);
  if (j.working_dir) pairs.push(['working dir', j.working_dir]);
  pairs.push(
    ['timeout', j.timeout_seconds === null ? 'none' : formatDuration(j.timeout_seconds * 1000)],
    ['priority', String(j.priority)],
    [
      'resources',
      [j.resources.cpu_cores !== undefined ? `${j.resources.cpu_cores} cpu` : null, j.resources.memory_bytes !== undefined ? formatBytes(j.resources.memory_bytes) : null]
        .filter(Boolean)
        .join(', ') || '-',
    ],
    ['tags', j.tags.join(', ') || '-'],
    ['labels', labelsText(j.labels)],
    ['retries', `${j.max_retries} (backoff ${j.retry_backoff_seconds}s)`],
  );
  if (j.depends_on.length) pairs.push(['depends on', j.depends_on.join(', ')]);
  pairs.push(['created', when(j.created_at)], ['updated', when(j.updated_at)]);
  if (last) {
    pairs.push(
      ['last execution', last.id],
      ['  status', statusText(out.out, last.status) + exitNote(last.status, last.exit_code, signal)],
      ['  started', when(last.started_at)],
      ['  duration', formatDuration(last.duration_ms)],
    );
  } else pairs.push(['last execution', 'never run']);
  out.fields(pairs);
}

/** Print each change of the job's status (polling once a second) until it reaches a final one; that job. */
async function watchJob(c: Ctx, initial: Job): Promise<Job> {
  const { client, out } = c;
  let last = `${initial.status}|${initial.last_execution?.id ?? ''}`;
  let sawActive = !FINAL_STATUSES.includes(initial.status);
  if (!sawActive && !out.json) out.note(out.err('gray', 'watching for a new run… (Ctrl-C to stop)'));
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000));
    const j = await client.get('orchestrator', `/api/v1/jobs/${initial.id}`, Job);
    const key = `${j.status}|${j.last_execution?.id ?? ''}`;
    if (key === last) continue;
    last = key;
    if (out.json) out.line(JSON.stringify(j));
    else {
      const exit = j.last_execution?.exit_code;
      out.line(`${out.out('gray', clock(new Date()))} ${statusText(out.out, j.status)}${exit !== null && exit !== undefined ? ` (exit ${exit})` : ''}${j.last_execution ? `  execution ${j.last_execution.id}` : ''}`);
    }
    if (!FINAL_STATUSES.includes(j.status)) sawActive = true;
    else if (sawActive) return j;
  }
}

/** The signal that killed the job's last execution, asked for only when it failed without a code. */
async function lastSignal(c: Ctx, j: Job): Promise<string | null> {
  const last = j.last_execution;
  if (!last || last.status !== 'failed' || last.exit_code !== null) return null;
  return (await c.client.get('worker-manager', `/api/v1/executions/${last.id}`, Execution.pick({ signal: true }))).signal;
}

/** The exit code `run` would have ended with for the job's last execution. */
async function watchedExitCode(c: Ctx, j: Job): Promise<number> {
  const last = j.last_execution;
  if (!last) return 1;
  return exitCodeFor(last.status, last.exit_code, await lastSignal(c, j));
}

export const list = async (f: { status?: string; priority?: number; tag?: string; name?: string; pipeline?: string; limit: number; offset?: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const pipeline_id = f.pipeline ? await resolvePipeline(client, f.pipeline) : undefined;
  const { items, total } = await client.list('orchestrator', '/api/v1/jobs', Job, {
    status: f.status, priority: f.priority, tag: f.tag, name: f.name, pipeline_id, limit: f.limit, offset: f.offset,
  });
  if (out.json) return out.printJson(items);
  out.table(JOB_HEADERS, items.map((j) => jobRow(out, j)), 'no jobs');
  pageNote(out, { shown: items.length, total, offset: f.offset }, 'jobs');
};

export const show = async (id: string, f: { watch?: boolean }, cmd: Command) => {
  const c = context(cmd);
  const jobId = await resolveJob(c.client, id);
  const job = await c.client.get('orchestrator', `/api/v1/jobs/${jobId}`, Job);
  if (c.out.json && !f.watch) return c.out.printJson(job);
  if (c.out.json) c.out.line(JSON.stringify(job));
  else showJob(c.out, job, await lastSignal(c, job));
  if (f.watch) process.exitCode = await watchedExitCode(c, await watchJob(c, job));
};

const JOB_CANCEL_TIMEOUT_MS = 10 * 60_000;

export const cancel = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const jobId = await resolveJob(client, id);
  // the orchestrator answers 409 "nothing to cancel: …" when nothing is queued or running; it
  // answers once every execution is cancelled (about 150 a second: a backlog of thousands takes a while)
  const ticker = tickerFor(out, `cancelling the executions of job ${jobId} (Ctrl-C stops waiting, not the cancel)`);
  let res: unknown;
  try {
    const asked = client.request('orchestrator', 'POST', `/api/v1/jobs/${jobId}/cancel`, null, { timeoutMs: JOB_CANCEL_TIMEOUT_MS });
    res = (await untilInterrupted(asked, `interrupted: the orchestrator goes on cancelling them (hodei executions list --job ${jobId} --status queued shows what is left)`)).data;
  } finally {
    ticker.stop();
  }
  if (out.json) return out.printJson(res ?? { id: jobId });
  out.line(cancelText(jobId, CancelCounts.safeParse(res).data?.cancelled));
};

const CancelCounts = JobCancelled.pick({ cancelled: true });

/** `cancelled 3 executions of job …: 2 queued, 1 running (being stopped)`; an orchestrator that counts nothing: the request. */
function cancelText(jobId: string, n: JobCancelled['cancelled'] | undefined): string {
  if (!n) return `cancel requested for job ${jobId}`;
  const parts = [n.queued ? `${n.queued} queued` : '', n.running ? `${n.running} running (being stopped)` : ''].filter(Boolean);
  return `cancelled ${n.executions} execution${n.executions === 1 ? '' : 's'} of job ${jobId}: ${parts.join(', ')}`;
}

export const results = async (id: string, f: { output?: string }, cmd: Command) => {
  const { client, out } = context(cmd);
  const { executionId } = await resolveExecutionOrJob(client, id);
  const res = await client.request('worker-manager', 'GET', `/api/v1/executions/${executionId}/result`, null);
  const text = `${JSON.stringify(res.data, null, 2)}\n`;
  if (f.output) {
    await writeFile(f.output, text).catch((err: Error) => {
      throw new CliError(`cannot write ${f.output}: ${err.message}`);
    });
    if (!out.json) out.note(`result of execution ${executionId} written to ${f.output}`);
    else out.printJson({ execution_id: executionId, file: f.output });
    return;
  }
  process.stdout.write(text);
};

export const stats = async (_f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const s = await client.get('orchestrator', '/api/v1/stats', Stats);
  if (out.json) return out.printJson(s);
  out.fields([
    ['total jobs', String(s.total_jobs)],
    ['success rate', s.success_rate === null ? '-' : `${(s.success_rate * (s.success_rate <= 1 ? 100 : 1)).toFixed(1)}%`],
    ['avg duration', formatDuration(s.avg_duration_ms)],
  ]);
  out.line();
  out.table(['STATUS', 'JOBS'], Object.entries(s.by_status).map(([k, v]) => [statusText(out.out, k), String(v)]));
  out.line();
  out.table(['PRIORITY', 'JOBS'], Object.entries(s.by_priority).map(([k, v]) => [k, String(v)]));
  out.line();
  out.table(['STORAGE', 'ROWS', 'SIZE'], Object.entries(s.storage).map(([k, v]) => [k, String(v.rows), formatBytes(v.bytes)]));
};

export const cleanup = async (f: { olderThan: number; dryRun?: boolean; yes?: boolean }, cmd: Command) => {
  const { client, out } = context(cmd);
  const days = Math.round((f.olderThan / 86_400) * 1e6) / 1e6;
  // the orchestrator waits up to 10 minutes for worker-manager to delete large logs; it answers only
  // at the end, so a terminal is shown what hodei waits for and for how long
  const clean = async (dryRun: boolean) => {
    const ticker = tickerFor(out, dryRun ? 'counting what would be deleted' : 'deleting (Ctrl-C stops waiting, not the cleanup)');
    try {
      const asked = client.request('orchestrator', 'POST', '/api/v1/cleanup', CleanupResult, { body: { older_than_days: days, dry_run: dryRun }, timeoutMs: 11 * 60_000 });
      const r = (await untilInterrupted(asked, dryRun ? 'interrupted' : 'interrupted: the orchestrator goes on with the cleanup (hodei jobs stats shows what is left)')).data;
      ticker.stop(dryRun ? 'counted' : 'deleted');
      return r;
    } finally {
      ticker.stop();
    }
  };
  // at a terminal, what would go is shown first, and goes only once the user says so
  if (!f.dryRun && !f.yes && process.stdin.isTTY) {
    const plan = await clean(true);
    if (plan.jobs + plan.executions + plan.pipeline_runs === 0) return out.note('nothing to delete');
    for (const line of cleanupText(plan)) out.note(line);
    await confirm('delete them?', 'nothing deleted');
  }
  const r = await clean(f.dryRun === true);
  if (out.json) return out.printJson(r);
  for (const line of cleanupText(r)) out.line(line);
};

/** Resolves as `work` does, or fails with `message` (exit 130) at a Ctrl-C meanwhile. */
function untilInterrupted<T>(work: Promise<T>, message: string): Promise<T> {
  let onSigint = () => {};
  const interrupted = new Promise<never>((_resolve, reject) => {
    onSigint = () => reject(new CliError(message, 130));
  });
  process.once('SIGINT', onSigint);
  return Promise.race([work, interrupted]).finally(() => process.off('SIGINT', onSigint));
}

/** `deleted 1 job, 3 executions (…) with their logs, and 0 pipeline runs`, then the jobs' ids. */
function cleanupText(r: CleanupResult): string[] {
  const verb = r.dry_run ? 'would delete' : 'deleted';
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const kinds = [
    r.older_executions ? `${r.older_executions} older of jobs that stay` : '',
    r.adhoc_executions ? `${r.adhoc_executions} of no job` : '',
  ].filter(Boolean);
  return [
    `${verb} ${count(r.jobs, 'job')}, ${count(r.executions, 'execution')}${kinds.length ? ` (${kinds.join(', ')})` : ''} with their logs, and ${count(r.pipeline_runs, 'pipeline run')}`,
    ...r.job_ids.map((id) => `  ${id}`),
  ];
}
