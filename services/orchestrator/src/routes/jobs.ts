// /api/v1/jobs: job definitions, their status (from their newest execution) and cancel.
import {
  checkDefinitionFits,
  BadRequestError,
  ConflictError,
  newId,
  NotFoundError,
  sendCreated,
  sendList,
  withTransaction,
  type Api,
  type Pool,
} from '@hodei/platform';
import { DEFAULT_SPEC, IdParams, Job, JobCancelled, JobCreate, JobListQuery, JobPatch, z } from '@hodei/types';
import type { Counter } from 'prom-client';
import { findCycle } from '../dag.js';
import type { Db } from '../store/db.js';
import { countActiveExecutions } from '../store/executions.js';
import * as jobs from '../store/jobs.js';
import { getPipeline } from '../store/pipelines.js';
import { runsAwaitingJob } from '../store/runs.js';
import type { WorkerManagerClient } from '../worker-manager.js';


export interface JobRouteDeps {
  db: Pool;
  workerManager: WorkerManagerClient;
  metrics: { jobsCreated: Counter; jobsCancelled: Counter };
  /** The NATS server's max_payload: a definition over it could be stored but never run. */
  maxPayload: () => number | undefined;
}

const field = (path: string, message: string) => new BadRequestError(`invalid body: ${path}`, [{ path, message }]);

/** Runs a write of a job whose name must be unique in its pipeline; the unique index's violation becomes a 409 naming `name`. */
async function uniqueInPipeline<T>(pipelineId: string | null, name: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if ((err as { constraint?: unknown }).constraint !== jobs.NAME_IN_PIPELINE_KEY) throw err;
    const message = `pipeline ${pipelineId} already has a job named "${name}": dependencies and runs tell jobs apart by name`;
    throw new ConflictError(message, [{ path: 'name', message }]);
  }
}

/**
 * Locks the job's pipeline, and `alsoPipeline` (where a PATCH moves it), then the job: pipeline rows
 * first, in id order, as creating a run and deleting a pipeline take them, so that dependency checks
 * see every concurrent change of the pipeline's jobs and no two writers wait on each other.
 * Null when the job does not exist.
 */
async function lockJobInPipeline(db: Db, id: string, alsoPipeline?: string | null): Promise<{ pipeline_id: string | null } | null> {
  const seen = await jobs.pipelineOf(db, id);
  if (seen === undefined) return null;
  for (const pid of [...new Set([seen, alsoPipeline].filter((p): p is string => !!p))].sort()) await getPipeline(db, pid, true);
  const job = await jobs.lockJob(db, id);
  if (job && job.pipeline_id !== seen) throw new ConflictError(`job ${id} moved to another pipeline meanwhile: try again`);
  return job;
}

/** The pipeline a job is put in must exist and be active. */
async function checkPipeline(db: Db, pipelineId: string): Promise<void> {
  const p = await getPipeline(db, pipelineId, true);
  if (!p) throw new NotFoundError('pipeline', pipelineId, 'pipeline_id');
  if (p.status === 'archived') throw new ConflictError(`pipeline ${pipelineId} is archived: it takes no new jobs`);
}

/** `a` / `a, b, c and 4 more`: the jobs a message is about, not a thousand ids. */
const idList = (ids: string[]) => `${ids.slice(0, 3).join(', ')}${ids.length > 3 ? ` and ${ids.length - 3} more` : ''}`;
/** `job a` / `jobs a, b, c and 4 more`. */
const listIds = (ids: string[]) => `job${ids.length === 1 ? '' : 's'} ${idList(ids)}`;

/**
 * A job moved to another pipeline (or out of any) by a PATCH that leaves depends_on as it was: the
 * jobs it depends on stay behind, so the move is refused naming pipeline_id, the field that was sent,
 * and saying what to send with it.
 */
function checkMoveKeepsDependencies(from: string | null, to: string | null, dependsOn: string[]): void {
  if (!dependsOn.length) return;
  const jobsOf = `${dependsOn.length} job${dependsOn.length === 1 ? '' : 's'} of pipeline ${from} (depends_on: ${idList(dependsOn)})`;
  const message = to
    ? `the job depends on ${jobsOf}, which would not be in pipeline ${to}: send depends_on (jobs of pipeline ${to}, or []) with pipeline_id`
    : `the job depends on ${jobsOf}, and a job outside any pipeline depends on none: send "depends_on": [] with pipeline_id`;
  throw new ConflictError(message, [{ path: 'pipeline_id', message }]);
}

/** depends_on names jobs of the same pipeline, and (for an existing job) closes no cycle. */
async function checkDependsOn(db: Db, jobId: string, pipelineId: string | null, dependsOn: string[]): Promise<void> {
  if (!dependsOn.length) return;
  if (!pipelineId) throw field('depends_on', 'a job can only depend on jobs of its pipeline: set pipeline_id');
  const self = dependsOn.indexOf(jobId);
  if (self >= 0) throw field(`depends_on.${self}`, 'a job cannot depend on itself');
  const outside = await jobs.idsOutsidePipeline(db, pipelineId, dependsOn);
  if (outside.length) {
    const i = dependsOn.indexOf(outside[0]!);
    throw field(`depends_on.${i}`, `${outside[0]} is not a job of pipeline ${pipelineId}`);
  }
  const graph = await jobs.pipelineGraph(db, pipelineId);
  graph.set(jobId, dependsOn);
  if (findCycle(graph)) throw field('depends_on', 'these dependencies would make a cycle');
}

export function jobRoutes(api: Api, deps: JobRouteDeps): void {
  const { db, workerManager } = deps;

  api.route(
    {
      method: 'post',
      path: '/api/v1/jobs',
      tag: 'jobs',
      summary: 'Define a job (JSON or YAML); `{pipeline_id}` alone creates a job with no command yet',
      body: JobCreate,
      yaml: true,
      responses: {
        201: { description: 'the job, status pending', schema: Job },
        404: { description: 'pipeline_id names no pipeline' },
        409: { description: 'the pipeline is archived, or already has a job of this name' },
        413: { description: 'the body is over HODEI_BODY_LIMIT, or command + script + args + env are over what NATS carries in one message (max_payload)' },
      },
    },
    async ({ body }, _req, res) => {
      const id = newId();
      const pipelineId = body.pipeline_id ?? null;
      const dependsOn = [...new Set(body.depends_on ?? [])];
      const values: jobs.JobValues = {
        name: body.name ?? `job-${id.slice(-8)}`,
        description: body.description ?? null,
        pipeline_id: pipelineId,
        command: body.command ?? null,
        script: body.script ?? null,
        args: body.args ?? DEFAULT_SPEC.args,
        env: body.env ?? DEFAULT_SPEC.env,
        working_dir: body.working_dir ?? null,
        timeout_seconds: body.timeout_seconds ?? null,
        priority: body.priority ?? DEFAULT_SPEC.priority,
        resources: body.resources ?? {},
        tags: [...new Set(body.tags ?? [])],
        labels: body.labels ?? DEFAULT_SPEC.labels,
        max_retries: body.max_retries ?? DEFAULT_SPEC.max_retries,
        retry_backoff_seconds: body.retry_backoff_seconds ?? DEFAULT_SPEC.retry_backoff_seconds,
        depends_on: dependsOn,
      };
      checkDefinitionFits(deps.maxPayload(), values);
      let job: Job;
      if (pipelineId) {
        job = await withTransaction(db, async (c) => {
          await checkPipeline(c, pipelineId);
          await checkDependsOn(c, id, pipelineId, dependsOn);
          return uniqueInPipeline(pipelineId, values.name, () => jobs.insertJob(c, id, values));
        });
      } else {
        // outside any pipeline there is nothing to check against: one statement, no transaction
        await checkDependsOn(db, id, null, dependsOn);
        job = await jobs.insertJob(db, id, values);
      }
      deps.metrics.jobsCreated.inc();
      sendCreated(res, `/api/v1/jobs/${id}`, job);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/jobs',
      tag: 'jobs',
      summary: 'List jobs, newest first (filters: status, pipeline_id, tag, priority number or name, exact name)',
      query: JobListQuery,
      responses: { 200: { description: 'array of jobs; X-Total-Count has the total', schema: z.array(Job) } },
    },
    async ({ query }, _req, res) => {
      const { items, total } = await jobs.listJobs(db, query);
      sendList(res, items, total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/jobs/:id',
      tag: 'jobs',
      summary: 'A job: its definition, status and last execution',
      params: IdParams,
      responses: { 200: { description: 'the job', schema: Job }, 404: { description: 'no such job' } },
    },
    async ({ params }, _req, res) => {
      const job = await jobs.getJob(db, params.id);
      if (!job) throw new NotFoundError('job', params.id);
      res.json(job);
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/api/v1/jobs/:id',
      tag: 'jobs',
      summary: 'Change a job definition (JSON or YAML); setting command clears script and the other way round',
      params: IdParams,
      body: JobPatch,
      yaml: true,
      responses: {
        200: { description: 'the job', schema: Job },
        404: { description: 'no such job, or pipeline_id names no pipeline' },
        409: { description: 'other jobs depend on it and it would leave their pipeline, it depends on jobs of its pipeline and moves without a new depends_on, the target pipeline is archived, or its pipeline has another job of this name' },
        413: { description: 'the body is over HODEI_BODY_LIMIT, or the changed command + script + args + env are over what NATS carries in one message (max_payload)' },
      },
    },
    async ({ params, body }, _req, res) => {
      await withTransaction(db, async (c) => {
        const current = await lockJobInPipeline(c, params.id, body.pipeline_id);
        if (!current) throw new NotFoundError('job', params.id);
        const existing = (await jobs.getJob(c, params.id))!;
        const pipelineId = body.pipeline_id !== undefined ? body.pipeline_id : existing.pipeline_id;
        const movesPipeline = pipelineId !== existing.pipeline_id;
        if (movesPipeline) {
          if (pipelineId) await checkPipeline(c, pipelineId);
          const dependents = await jobs.dependents(c, params.id, existing.pipeline_id);
          if (dependents.length) {
            const depend = dependents.length === 1 ? 'depends' : 'depend';
            const message = `${listIds(dependents)} of pipeline ${existing.pipeline_id} ${depend} on this job: it cannot move to another pipeline (change their depends_on first)`;
            throw new ConflictError(message, [{ path: 'pipeline_id', message }]);
          }
          if (body.depends_on === undefined) checkMoveKeepsDependencies(existing.pipeline_id, pipelineId, existing.depends_on);
        }
        const dependsOn = body.depends_on !== undefined ? [...new Set(body.depends_on)] : existing.depends_on;
        if (body.depends_on !== undefined || movesPipeline) await checkDependsOn(c, params.id, pipelineId, dependsOn);
        await uniqueInPipeline(pipelineId, body.name ?? existing.name, () => jobs.updateJob(c, params.id, {
          name: body.name,
          description: body.description,
          pipeline_id: pipelineId,
          command: body.command ?? (body.script !== undefined ? null : undefined),
          script: body.script ?? (body.command !== undefined ? null : undefined),
          args: body.args,
          env: body.env,
          working_dir: body.working_dir,
          timeout_seconds: body.timeout_seconds,
          priority: body.priority,
          resources: body.resources,
          tags: body.tags ? [...new Set(body.tags)] : undefined,
          labels: body.labels,
          max_retries: body.max_retries,
          retry_backoff_seconds: body.retry_backoff_seconds,
          depends_on: dependsOn,
        }));
        checkDefinitionFits(deps.maxPayload(), (await jobs.getJob(c, params.id))!);
      });
      res.json(await jobs.getJob(db, params.id));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/api/v1/jobs/:id',
      tag: 'jobs',
      summary: 'Delete a job (not while one of its executions, the newest or an older one, is queued or running, nor while a running pipeline run has yet to run it)',
      params: IdParams,
      responses: {
        204: { description: 'deleted' },
        404: { description: 'no such job' },
        409: { description: 'an execution of the job is queued or running, or a running pipeline run has yet to run it (the detail names the runs)' },
      },
    },
    async ({ params }, _req, res) => {
      await withTransaction(db, async (c) => {
        const job = await lockJobInPipeline(c, params.id);
        if (!job) throw new NotFoundError('job', params.id);
        const active = await countActiveExecutions(c, params.id);
        if (active > 0)
          throw new ConflictError(`job ${params.id} has ${active} queued or running execution(s): cancel it before deleting it`);
        const awaiting = await runsAwaitingJob(c, params.id);
        if (awaiting.length)
          throw new ConflictError(`job ${params.id} is still to run in pipeline run(s) ${awaiting.join(', ')}: cancel them or let them finish before deleting it`);
        await jobs.deleteJob(c, params.id, job.pipeline_id);
      });
      res.status(204).end();
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/jobs/:id/cancel',
      tag: 'jobs',
      summary: "Cancel the job's queued and running executions (through worker-manager)",
      params: IdParams,
      responses: {
        202: {
          description: 'the job as it is now (its status follows once the executions stop), and `cancelled`: how many executions this cancel stopped, by the status each had when it was asked',
          schema: JobCancelled,
        },
        404: { description: 'no such job' },
        409: { description: 'nothing to cancel: the job never ran or its last execution ended' },
        502: { description: 'worker-manager answered badly' },
        503: { description: 'worker-manager did not answer' },
      },
    },
    async ({ params }, _req, res) => {
      const job = await jobs.getJob(db, params.id);
      if (!job) throw new NotFoundError('job', params.id);
      const { queued, running } = await workerManager.cancelActive(params.id);
      deps.metrics.jobsCancelled.inc(queued + running);
      if (queued + running === 0) {
        // none queued or running, or every one ended before its cancel arrived
        const last = await workerManager.lastExecution(params.id);
        throw new ConflictError(
          last
            ? `nothing to cancel: the job's last execution ${last.id} ended (${last.status})`
            : `nothing to cancel: job ${params.id} has never run`,
        );
      }
      const now = (await jobs.getJob(db, params.id)) ?? job;
      res.status(202).json({ ...now, cancelled: { executions: queued + running, queued, running } } satisfies JobCancelled);
    },
  );
}
