// /api/v1/pipelines: pipelines, optionally created with their jobs inline (depends_on by name).
import { checkDefinitionFits, ConflictError, newId, NotFoundError, sendCreated, sendList, withTransaction, type Api, type Pool } from '@hodei/platform';
import { DEFAULT_SPEC, IdParams, Pipeline, PipelineCreate, PipelineListQuery, PipelinePatch, z } from '@hodei/types';
import type { Counter } from 'prom-client';
import { resolveInlineDependencies } from '../dag.js';
import type { Db } from '../store/db.js';
import * as jobs from '../store/jobs.js';
import * as pipelines from '../store/pipelines.js';
import { runningRunsOf } from '../store/runs.js';


export interface PipelineRouteDeps {
  db: Pool;
  metrics: { pipelinesCreated: Counter; jobsCreated: Counter };
  /** The NATS server's max_payload: an inline job over it could be stored but never run. */
  maxPayload: () => number | undefined;
}

async function withJobs(db: Db, p: Pipeline): Promise<Pipeline> {
  return { ...p, jobs: await jobs.pipelineJobs(db, p.id) };
}

export function pipelineRoutes(api: Api, deps: PipelineRouteDeps): void {
  const { db } = deps;

  api.route(
    {
      method: 'post',
      path: '/api/v1/pipelines',
      tag: 'pipelines',
      summary: 'Create a pipeline (JSON or YAML), optionally with its jobs inline; their depends_on name other jobs of the body',
      body: PipelineCreate,
      yaml: true,
      responses: {
        201: { description: 'the pipeline with its jobs', schema: Pipeline },
        413: { description: 'the body is over HODEI_BODY_LIMIT, or an inline job\'s command + script + args + env are over what NATS carries in one message (max_payload)' },
      },
    },
    async ({ body }, _req, res) => {
      const id = newId();
      const inline = body.jobs ?? [];
      const jobIds = inline.map(() => newId());
      const dependsOn = resolveInlineDependencies(inline, jobIds);
      for (const j of inline) checkDefinitionFits(deps.maxPayload(), j, `the definition of job ${j.name}`);
      const created = await withTransaction(db, async (c) => {
        const p = await pipelines.insertPipeline(c, id, body.name, body.description ?? null);
        for (const [i, j] of inline.entries()) {
          await jobs.insertJob(c, jobIds[i]!, {
            name: j.name,
            description: j.description ?? null,
            pipeline_id: id,
            command: j.command ?? null,
            script: j.script ?? null,
            args: j.args ?? DEFAULT_SPEC.args,
            env: j.env ?? DEFAULT_SPEC.env,
            working_dir: j.working_dir ?? null,
            timeout_seconds: j.timeout_seconds ?? null,
            priority: j.priority ?? DEFAULT_SPEC.priority,
            resources: j.resources ?? {},
            tags: [...new Set(j.tags ?? [])],
            labels: j.labels ?? DEFAULT_SPEC.labels,
            max_retries: j.max_retries ?? DEFAULT_SPEC.max_retries,
            retry_backoff_seconds: j.retry_backoff_seconds ?? DEFAULT_SPEC.retry_backoff_seconds,
            depends_on: dependsOn[i]!,
          });
        }
        return withJobs(c, p);
      });
      deps.metrics.pipelinesCreated.inc();
      deps.metrics.jobsCreated.inc(inline.length);
      sendCreated(res, `/api/v1/pipelines/${id}`, created);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipelines',
      tag: 'pipelines',
      summary: 'List pipelines, newest first (filters: status, exact name)',
      query: PipelineListQuery,
      responses: { 200: { description: 'array of pipelines; X-Total-Count has the total', schema: z.array(Pipeline) } },
    },
    async ({ query }, _req, res) => {
      const { items, total } = await pipelines.listPipelines(db, query);
      sendList(res, items, total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipelines/:id',
      tag: 'pipelines',
      summary: 'A pipeline with its jobs (id, name, depends_on, status)',
      params: IdParams,
      responses: { 200: { description: 'the pipeline', schema: Pipeline }, 404: { description: 'no such pipeline' } },
    },
    async ({ params }, _req, res) => {
      const p = await pipelines.getPipeline(db, params.id);
      if (!p) throw new NotFoundError('pipeline', params.id);
      res.json(await withJobs(db, p));
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/api/v1/pipelines/:id',
      tag: 'pipelines',
      summary: 'Rename, describe, archive (status "archived") or reactivate a pipeline',
      params: IdParams,
      body: PipelinePatch,
      yaml: true,
      responses: { 200: { description: 'the pipeline', schema: Pipeline }, 404: { description: 'no such pipeline' } },
    },
    async ({ params, body }, _req, res) => {
      const p = await pipelines.updatePipeline(db, params.id, body);
      if (!p) throw new NotFoundError('pipeline', params.id);
      res.json(await withJobs(db, p));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/api/v1/pipelines/:id',
      tag: 'pipelines',
      summary: 'Delete a pipeline and its jobs and runs (not while one of its runs is running or one of its jobs is queued or running)',
      params: IdParams,
      responses: {
        204: { description: 'deleted' },
        404: { description: 'no such pipeline' },
        409: { description: 'one of its runs is running (the detail names them), or one of its jobs is queued or running' },
      },
    },
    async ({ params }, _req, res) => {
      await withTransaction(db, async (c) => {
        const p = await pipelines.getPipeline(c, params.id, true);
        if (!p) throw new NotFoundError('pipeline', params.id);
        const running = await runningRunsOf(c, params.id);
        if (running.length) throw new ConflictError(`pipeline ${params.id} has running run(s) ${running.join(', ')}: cancel them or let them finish first`);
        const active = await jobs.countActiveInPipeline(c, params.id);
        if (active > 0) throw new ConflictError(`pipeline ${params.id} has ${active} queued or running job(s): cancel them first`);
        await pipelines.deletePipeline(c, params.id);
      });
      res.status(204).end();
    },
  );
}
