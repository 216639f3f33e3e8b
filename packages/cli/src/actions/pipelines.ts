// `hodei pipelines …` and `hodei apply -f pipeline.yaml`.
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { Job, Pipeline, PipelineCreate, type InlineJob } from '@hodei/types';
import { context, type Ctx } from '../context.js';
import { CliError, UsageError } from '../errors.js';
import { cancelWhenAbandoned, holdSignals, type HeldSignal } from '../abandon.js';
import { exitWhenTold, statusText, when } from '../output.js';
import { untilAnswered } from '../outage.js';
import { UUID } from '../resolve.js';
import { resolvePipeline } from '../resources.js';
import { followRun, PipelineRun, printRunSummary, runExitCode } from './pipeline-run.js';

/** Follows the run with Ctrl-C wired: once cancels the run and keeps following, twice detaches.
 *  `early`: a signal that came while the run was being started, acted on at once. */
async function followToEnd(c: Ctx, runId: string, timestamps: boolean, early: HeldSignal | null = null): Promise<number> {
  const { client, out } = c;
  if (!out.json) out.note(out.err('gray', `pipeline run ${runId} (Ctrl-C cancels it)`));
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      out.note(out.err('yellow', `cancelling pipeline run ${runId}… (Ctrl-C again to detach)`));
      client
        .send('orchestrator', 'POST', `/api/v1/pipeline-runs/${runId}/cancel`, null)
        .catch((err: Error) => out.note(out.err('red', `could not cancel: ${err.message}`)));
      return;
    }
    out.note(`detached; the run goes on: hodei pipelines follow ${runId}`);
    exitWhenTold(130);
  };
  process.on('SIGINT', onSigint);
  const abandoned = cancelWhenAbandoned(out, {
    what: () => `pipeline run ${runId}`,
    cancel: () => client.request('orchestrator', 'POST', `/api/v1/pipeline-runs/${runId}/cancel`, null, { timeoutMs: 5000 }),
  });
  if (early === 'SIGINT') onSigint();
  else if (early) abandoned.signalled(early);
  try {
    const run = await followRun(c, runId, { timestamps });
    if (out.json) out.printJson(run);
    else printRunSummary(c, run);
    return abandoned.code ?? runExitCode(run.status);
  } finally {
    process.off('SIGINT', onSigint);
    abandoned.release();
  }
}

async function readFileText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError(`cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
}

interface PipelineFile {
  name: string;
  description?: string | null;
  jobs?: Record<string, unknown>[];
}

async function parsePipelineFile(file: string, text: string): Promise<PipelineFile> {
  const { parse: parseYaml } = await import('yaml');
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new CliError(`${file}: ${(err as Error).message.split('\n')[0]?.replace(/:$/, '')}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new CliError(`${file}: a pipeline file is a YAML mapping (name:, jobs:)`);
  const d = doc as Record<string, unknown>;
  if (typeof d.name !== 'string' || !d.name.trim()) throw new CliError(`${file}: the pipeline needs a name`, 1, ['name: required']);
  if (d.jobs !== undefined && !Array.isArray(d.jobs)) throw new CliError(`${file}: jobs must be a list`, 1, ['jobs: expected a list']);
  return d as unknown as PipelineFile;
}

export function showPipeline(c: Ctx, p: Pipeline): void {
  const { out } = c;
  out.fields([
    ['id', p.id],
    ['name', p.name],
    ['description', p.description ?? '-'],
    ['status', statusText(out.out, p.status)],
    ['created', when(p.created_at)],
    ['updated', when(p.updated_at)],
  ]);
  const jobs = p.jobs ?? [];
  out.line();
  const names = new Map(jobs.map((j) => [j.id, j.name]));
  out.table(
    ['JOB', 'ID', 'STATUS', 'DEPENDS ON'],
    jobs.map((j) => [j.name, j.id, statusText(out.out, j.status), j.depends_on.map((d) => names.get(d) ?? d).join(', ') || '-']),
    'no jobs',
  );
}

/** Create the pipeline of a file, or bring the existing one of that name in line with it. */
async function apply(c: Ctx, file: string): Promise<void> {
  const { client, out } = c;
  const text = await readFileText(file);
  const doc = await parsePipelineFile(file, text);
  const { items } = await client.list('orchestrator', '/api/v1/pipelines', Pipeline, { name: doc.name, limit: 1000 });
  const existing = items.find((p) => p.name === doc.name);
  if (!existing) {
    const res = await client.request('orchestrator', 'POST', '/api/v1/pipelines', Pipeline, { raw: { text, contentType: 'application/yaml' } });
    const p = res.data;
    if (out.json) return out.printJson({ action: 'created', pipeline: p });
    out.line(`pipeline ${p.name} created: ${p.id} (${p.jobs?.length ?? doc.jobs?.length ?? 0} jobs)`);
    return;
  }

  // Update: description, then each inline job by name (create missing ones), then dependencies by id.
  // The whole file is checked first, as a create would be: a bad field in a later job must not
  // leave the earlier ones changed.
  const checked = PipelineCreate.safeParse(doc);
  if (!checked.success) {
    const issues = checked.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    throw new CliError(`${file}: invalid pipeline: ${[...new Set(issues.map((i) => i.path))].join(', ')}`, 1, issues.map((i) => `${i.path}: ${i.message}`));
  }
  const current = await pipelineJobs(c, existing.id);
  const inline = doc.jobs ?? [];
  const known = new Set([...current.map((j) => j.name), ...inline.map((j) => String(j.name ?? ''))]);
  for (const j of inline) {
    const missing = dependsOn(j).filter((d) => !known.has(d));
    if (missing.length) throw new CliError(`${file}: job ${String(j.name)} depends on unknown job ${missing.join(', ')}`, 1, [`jobs.${String(j.name)}.depends_on: no job named ${missing[0]}`]);
  }
  // the orchestrator answers a PATCH that changes nothing as one that does: what differs is found here,
  // and only that is sent, so an unchanged file changes nothing and says so
  const describe = doc.description !== undefined && doc.description !== existing.description;
  if (describe) await client.send('orchestrator', 'PATCH', `/api/v1/pipelines/${existing.id}`, Pipeline, { description: doc.description });
  const byName = new Map(current.map((j) => [j.name, j]));
  const ids = new Map(current.map((j) => [j.name, j.id]));
  const changed = new Set<string>();
  let created = 0;
  for (const [i, j] of inline.entries()) {
    const { depends_on: _deps, ...fields } = j;
    const name = String(fields.name ?? '');
    const now = byName.get(name);
    if (now) {
      if (!differs(checked.data.jobs![i]!, now)) continue;
      await client.send('orchestrator', 'PATCH', `/api/v1/jobs/${now.id}`, Job, fields);
      changed.add(now.id);
    } else {
      const job = await client.send('orchestrator', 'POST', '/api/v1/jobs', Job, { ...fields, pipeline_id: existing.id });
      ids.set(name, job.id);
      created++;
    }
  }
  // Dependencies the file drops go first, then the ones it adds: the graph between the two steps is
  // part of the file's, so a valid file never meets a cycle of old and new edges (a → b becoming b → a).
  const oldDeps = new Map(current.map((j) => [j.id, j.depends_on]));
  const wanted = inline
    .map((j) => ({ id: ids.get(String(j.name)) as string, deps: dependsOn(j).map((d) => ids.get(d) as string) }))
    .filter(({ id, deps }) => !sameSet(deps, oldDeps.get(id) ?? []));
  for (const { id, deps } of wanted) {
    const old = oldDeps.get(id) ?? [];
    const staying = old.filter((d) => deps.includes(d));
    if (staying.length < old.length) await client.send('orchestrator', 'PATCH', `/api/v1/jobs/${id}`, Job, { depends_on: staying });
  }
  for (const { id, deps } of wanted) {
    await client.send('orchestrator', 'PATCH', `/api/v1/jobs/${id}`, Job, { depends_on: deps });
    if (oldDeps.has(id)) changed.add(id);
  }
  const kept = current.filter((j) => !inline.some((i) => i.name === j.name)).map((j) => j.name);
  const updated = changed.size;
  const unchanged = inline.length - created - updated;
  const action = describe || created || updated ? 'updated' : 'unchanged';
  const after = await client.get('orchestrator', `/api/v1/pipelines/${existing.id}`, Pipeline);
  if (out.json)
    return out.printJson({ action, pipeline: after, jobs_created: created, jobs_updated: updated, jobs_unchanged: unchanged, jobs_not_in_file: kept });
  const jobs = (n: number) => `${n} job${n === 1 ? '' : 's'}`;
  if (action === 'unchanged') out.line(`pipeline ${after.name} unchanged: ${after.id} (${jobs(inline.length)})`);
  else out.line(`pipeline ${after.name} updated: ${after.id} (${jobs(updated)} updated, ${unchanged} unchanged, ${created} created)`);
  if (kept.length) out.note(out.err('yellow', `not in ${file}, left as they are: ${kept.join(', ')}`));
}

/** Every job of a pipeline, as the orchestrator has it. */
async function pipelineJobs(c: Ctx, pipelineId: string): Promise<Job[]> {
  const jobs: Job[] = [];
  for (;;) {
    const { items, total } = await c.client.list('orchestrator', '/api/v1/jobs', Job, { pipeline_id: pipelineId, limit: 1000, offset: jobs.length });
    jobs.push(...items);
    if (items.length === 0 || total === null || jobs.length >= total) return jobs;
  }
}

/** Whether PATCHing a file's job (as parsed: priority names are numbers) onto the job would change it. */
function differs(wanted: InlineJob, job: Job): boolean {
  for (const [key, value] of Object.entries(wanted)) {
    if (key === 'depends_on' || value === undefined) continue;
    // the orchestrator keeps a tag once
    const given = key === 'tags' ? [...new Set(value as string[])] : value;
    if (canonical(given) !== canonical(job[key as keyof Job] ?? null)) return true;
  }
  // setting the command clears the script, and the other way round
  return (wanted.command !== undefined && job.script !== null) || (wanted.script !== undefined && job.command !== null);
}

/** JSON with every object's keys in order: the orchestrator stores resources, env and labels as jsonb. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && new Set([...a, ...b]).size === new Set(a).size;

function dependsOn(job: Record<string, unknown>): string[] {
  return Array.isArray(job.depends_on) ? (job.depends_on as unknown[]).map(String) : [];
}

export const applyFile = async (f: { file: string }, cmd: Command) => apply(context(cmd), f.file);

export const create = async (f: { name?: string; description?: string; file?: string }, cmd: Command) => {
  const c = context(cmd);
  let p: Pipeline;
  if (f.file) {
    const text = await readFileText(f.file);
    await parsePipelineFile(f.file, text);
    p = (await c.client.request('orchestrator', 'POST', '/api/v1/pipelines', Pipeline, { raw: { text, contentType: 'application/yaml' } })).data;
  } else {
    if (!f.name) throw new UsageError('give --name NAME or -f pipeline.yaml', ['name: required']);
    p = await c.client.send('orchestrator', 'POST', '/api/v1/pipelines', Pipeline, { name: f.name, description: f.description });
  }
  if (c.out.json) return c.out.printJson(p);
  c.out.line(`pipeline ${p.name} created: ${p.id}`);
};

export const list = async (f: { limit: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const { items, total } = await client.list('orchestrator', '/api/v1/pipelines', Pipeline, { limit: f.limit });
  if (out.json) return out.printJson(items);
  out.table(
    ['ID', 'NAME', 'STATUS', 'CREATED', 'DESCRIPTION'],
    items.map((p) => [p.id, p.name, statusText(out.out, p.status), when(p.created_at), p.description ?? '-']),
    'no pipelines',
  );
  if (total !== null && total > items.length) out.note(out.err('gray', `${items.length} of ${total} pipelines`));
};

export const show = async (id: string, _f: unknown, cmd: Command) => {
  const c = context(cmd);
  const p = await c.client.get('orchestrator', `/api/v1/pipelines/${await resolvePipeline(c.client, id)}`, Pipeline);
  if (c.out.json) return c.out.printJson(p);
  showPipeline(c, p);
};

export const run = async (id: string, f: { follow?: boolean; env?: Record<string, string>; timestamps: boolean }, cmd: Command) => {
  const c = context(cmd);
  const { client, out } = c;
  const pid = await resolvePipeline(client, id);
  // --follow: Ctrl-C, SIGTERM or SIGHUP while the run is being started cancels it once it exists (Ctrl-C twice: hodei just stops)
  const early = f.follow ? holdSignals() : null;
  let run: PipelineRun;
  try {
    run = await client.send('orchestrator', 'POST', `/api/v1/pipelines/${pid}/runs`, PipelineRun, f.env ? { env: f.env } : {});
  } finally {
    early?.release();
  }
  if (!f.follow) {
    if (out.json) return out.printJson(run);
    out.line(`pipeline run ${run.id} ${run.status}`);
    out.note(out.err('gray', `follow it with: hodei pipelines follow ${run.id}`));
    return;
  }
  process.exitCode = await followToEnd(c, run.id, f.timestamps, early?.signal ?? null);
};

function runIdOf(arg: string): string {
  if (!UUID.test(arg.trim())) throw new CliError(`"${arg}" is not a pipeline run id: give the whole id (hodei pipelines runs PIPELINE lists them)`);
  return arg.trim();
}

export const follow = async (runId: string, f: { timestamps: boolean }, cmd: Command) => {
  const c = context(cmd);
  const id = runIdOf(runId);
  const run = await untilAnswered(
    () => c.client.get('orchestrator', `/api/v1/pipeline-runs/${id}`, PipelineRun),
    (reason) => c.out.note(c.out.err('yellow', `${reason}; retrying…`)),
  );
  process.exitCode = await followToEnd(c, run.id, f.timestamps);
};

export const cancel = async (runId: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  // the orchestrator answers 409 "pipeline run … is already <status>" once it has ended
  const run = await client.send('orchestrator', 'POST', `/api/v1/pipeline-runs/${runIdOf(runId)}/cancel`, PipelineRun);
  if (out.json) return out.printJson(run);
  out.line(`cancel requested for pipeline run ${run.id}`);
};

export const runs = async (id: string, f: { limit: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const pid = await resolvePipeline(client, id);
  const { items } = await client.list('orchestrator', `/api/v1/pipelines/${pid}/runs`, PipelineRun, { limit: f.limit });
  if (out.json) return out.printJson(items);
  out.table(
    ['RUN', 'STATUS', 'STARTED', 'JOBS'],
    items.map((r) => [r.id, statusText(out.out, r.status), when(typeof r.created_at === 'string' ? r.created_at : null), r.jobs.map((j) => `${j.name}:${j.status}`).join(' ')]),
    'no runs',
  );
};

export const remove = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const pid = await resolvePipeline(client, id);
  await client.send('orchestrator', 'DELETE', `/api/v1/pipelines/${pid}`, null);
  if (out.json) return out.printJson({ id: pid, deleted: true });
  out.line(`pipeline ${pid} deleted`);
};
