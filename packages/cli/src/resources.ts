// Resolving what the user typed (full id, unique prefix, name) to the resource it means.
import { Execution, Id, Job, ManagedWorker, Pipeline, RegistryWorker, Schedule, z } from '@hodei/types';
import { CliError } from './errors.js';
import { ApiError } from './errors.js';
import { when } from './output.js';
import type { HodeiClient } from './http.js';
import { checkPrefix, idMatches, listAll, pick, UUID, type Candidate } from './resolve.js';

/** The jobs `input` can mean: those whose id begins with it, else those it names. */
async function jobMatches(client: HodeiClient, input: string, text: string): Promise<{ items: Job[]; total: number }> {
  const byId = await idMatches(client, 'orchestrator', '/api/v1/jobs', Job, text);
  if (byId.items.length > 0) return byId;
  const byName = await listAll(client, 'orchestrator', '/api/v1/jobs', Job, { name: input.trim() }, 1);
  return { items: byName, total: 0 };
}

export async function resolveJob(client: HodeiClient, input: string): Promise<string> {
  const text = checkPrefix(input, 'job');
  if (UUID.test(text)) return text;
  const jobs = await jobMatches(client, input, text);
  return pick(input, 'job', jobs.items.map(jobCandidate), 'newest', jobs.total).id;
}

export async function resolvePipeline(client: HodeiClient, input: string): Promise<string> {
  const text = checkPrefix(input, 'pipeline');
  if (UUID.test(text)) return text;
  const all = await listAll(client, 'orchestrator', '/api/v1/pipelines', Pipeline);
  return pick(input, 'pipeline', all.map((p) => ({ id: p.id, kind: 'pipeline', label: p.name, name: p.name, created_at: p.created_at }))).id;
}

export async function resolveSchedule(client: HodeiClient, input: string): Promise<string> {
  const text = checkPrefix(input, 'schedule');
  if (UUID.test(text)) return text;
  const all = await listAll(client, 'scheduler', '/api/v1/schedules', Schedule);
  return pick(
    input,
    'schedule',
    all.map((s) => ({ id: s.id, kind: 'schedule', label: `${s.name ?? ''} ${s.cron ?? s.run_at ?? ''}`.trim(), name: s.name, created_at: s.created_at })),
  ).id;
}

/** With `preferLive`, a name that a live worker shares with stopped or exited ones means the live one. */
export async function resolveWorker(client: HodeiClient, input: string, opts: { preferLive?: boolean } = {}): Promise<string> {
  const text = checkPrefix(input, 'worker');
  if (UUID.test(text)) return text;
  let all = await listAll(client, 'worker-manager', '/api/v1/workers', ManagedWorker);
  if (opts.preferLive) {
    const ended = (w: ManagedWorker) => w.name === input.trim() && (w.status === 'stopped' || w.status === 'exited');
    if (all.some((w) => w.name === input.trim() && !ended(w))) all = all.filter((w) => !ended(w));
  }
  return pick(input, 'worker', all.map(managedCandidate), 'refuse').id;
}

/**
 * Any worker that runs executions: the scheduler's registry holds the agents started with `hodei
 * worker` as well as the worker-manager's, which it keeps until the scheduler forgets them.
 */
export async function resolveAnyWorker(client: HodeiClient, input: string): Promise<string> {
  const text = checkPrefix(input, 'worker');
  if (UUID.test(text)) return text;
  const [registry, managed] = await Promise.allSettled([
    listAll(client, 'scheduler', '/api/v1/workers', RegistryWorker),
    listAll(client, 'worker-manager', '/api/v1/workers', ManagedWorker),
  ]);
  if (registry.status === 'rejected' && managed.status === 'rejected') throw registry.reason;
  const byId = new Map<string, Candidate>();
  for (const w of managed.status === 'fulfilled' ? managed.value : []) byId.set(w.id, managedCandidate(w));
  for (const w of registry.status === 'fulfilled' ? registry.value : [])
    if (!byId.has(w.id)) byId.set(w.id, { id: w.id, kind: 'worker', label: `${w.name ?? '-'} (${w.status}, registered ${when(w.registered_at)})`, name: w.name, created_at: w.registered_at });
  return pick(input, 'worker', [...byId.values()], 'refuse').id;
}

export async function resolveExecution(client: HodeiClient, input: string): Promise<string> {
  const text = checkPrefix(input, 'execution', false);
  if (UUID.test(text)) return text;
  const matches = await idMatches(client, 'worker-manager', '/api/v1/executions', Execution, text);
  return pick(input, 'execution', matches.items.map(executionCandidate), 'newest', matches.total).id;
}

const managedCandidate = (w: ManagedWorker): Candidate => ({ id: w.id, kind: 'worker', label: `${w.name ?? '-'} (${w.status}, started ${when(w.started_at)})`, name: w.name, created_at: w.started_at });
const jobCandidate = (j: Job): Candidate => ({ id: j.id, kind: 'job', label: `${j.name} (${j.status})`, name: j.name, created_at: j.created_at });
const executionCandidate = (e: Execution): Candidate => ({ id: e.id, kind: 'execution', label: `${e.name} (${e.status})`, created_at: e.created_at });

const LatestRef = z.object({ id: Id });

/** The newest execution of a job. */
export async function latestExecutionOf(client: HodeiClient, jobId: string): Promise<string> {
  const { items } = await client.list('worker-manager', '/api/v1/executions', LatestRef, { job_id: jobId, limit: 1 });
  const first = items[0];
  if (!first) {
    const job = await client.request('orchestrator', 'GET', `/api/v1/jobs/${jobId}`, null).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    });
    throw new CliError(job ? `job ${jobId} has not run yet` : `no execution or job has the id ${jobId}`);
  }
  return first.id;
}

/** An execution id, or a job id standing for its latest execution. */
export async function resolveExecutionOrJob(client: HodeiClient, input: string): Promise<{ executionId: string; jobId: string | null }> {
  const text = checkPrefix(input, 'execution or job');
  if (UUID.test(text)) {
    try {
      const e = await client.get('worker-manager', `/api/v1/executions/${text}`, Execution.pick({ id: true, job_id: true }));
      return { executionId: e.id, jobId: e.job_id };
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
    return { executionId: await latestExecutionOf(client, text), jobId: text };
  }
  const [executions, jobs] = await Promise.all([idMatches(client, 'worker-manager', '/api/v1/executions', Execution, text), jobMatches(client, input, text)]);
  const chosen = pick(
    input,
    'execution or job',
    [...executions.items.map(executionCandidate), ...jobs.items.map(jobCandidate)],
    'newest',
    executions.total + jobs.total,
  );
  if (chosen.kind === 'execution') return { executionId: chosen.id, jobId: executions.items.find((e) => e.id === chosen.id)?.job_id ?? null };
  return { executionId: await latestExecutionOf(client, chosen.id), jobId: chosen.id };
}
