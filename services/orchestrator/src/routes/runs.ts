// /api/v1/pipelines/:id/runs and /api/v1/pipeline-runs/:id.
import { BadRequestError, lastEventIdHeader, NotFoundError, sendList, type Api, type Bus, type Logger, type Pool } from '@hodei/platform';
import { IdParams, PipelineRun, PipelineRunEvent, PipelineRunListQuery, PipelineRunRequest, z } from '@hodei/types';
import type { Request } from 'express';
import { streamAllRuns, streamRun } from '../runs-sse.js';
import type { PipelineRunner } from '../runs.js';
import { getPipeline } from '../store/pipelines.js';
import * as runs from '../store/runs.js';


const MAX_EVENT_ID = 2n ** 64n - 1n;

/** The Last-Event-ID a reconnecting EventSource sends (an id the stream gave); undefined when absent. */
function lastEventId(req: Request, max = MAX_EVENT_ID): string | undefined {
  const v = req.get('last-event-id');
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,20}$/.test(v) || BigInt(v) > max)
    throw new BadRequestError('Last-Event-ID must be an event id of this stream', [{ path: 'Last-Event-ID', message: `must be an integer from 0 to ${max}` }]);
  return v;
}

export function runRoutes(api: Api, deps: { db: Pool; runner: PipelineRunner; bus: Bus; logger: Logger }): void {
  const { db, runner } = deps;

  api.route(
    {
      method: 'post',
      path: '/api/v1/pipelines/:id/runs',
      tag: 'pipelines',
      summary: 'Run every job of the pipeline in dependency order (a job starts once all it depends on completed)',
      params: IdParams,
      body: PipelineRunRequest,
      responses: {
        202: { description: 'the run as it is now', schema: PipelineRun, location: true },
        404: { description: 'no such pipeline' },
        409: { description: 'the pipeline is archived, has no jobs, or has jobs with nothing to run' },
        413: { description: "the body is over HODEI_BODY_LIMIT, or a job's command + script + args + env with the run's env are over what NATS carries in one message (max_payload)" },
        503: { description: 'worker-manager did not answer; no run was created' },
      },
    },
    async ({ params, body }, _req, res) => {
      const run = await runner.create(params.id, body.env ?? {});
      res.status(202).location(`/api/v1/pipeline-runs/${run.id}`).json(run);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipelines/:id/runs',
      tag: 'pipelines',
      summary: 'Runs of a pipeline, newest first',
      params: IdParams,
      query: PipelineRunListQuery,
      responses: { 200: { description: 'array of runs; X-Total-Count has the total', schema: z.array(PipelineRun) }, 404: { description: 'no such pipeline' } },
    },
    async ({ params, query }, _req, res) => {
      if (!(await getPipeline(db, params.id))) throw new NotFoundError('pipeline', params.id);
      const { items, total } = await runs.listRuns(db, params.id, query);
      sendList(res, items, total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipeline-runs/events/stream',
      tag: 'pipelines',
      summary:
        'Server-Sent Events of every pipeline run: `run_event` with a PipelineRunEvent for each job or run status change. ' +
        'Each carries its id; with Last-Event-ID (a reconnecting EventSource sends it) the events after it come first',
      headers: lastEventIdHeader('the id of the last event received: the stream goes on from the event after it'),
      responses: {
        200: { description: 'event stream (`connected`, then `run_event`…)', schema: PipelineRunEvent, contentType: 'text/event-stream' },
        400: { description: 'Last-Event-ID is not an event id' },
      },
    },
    async (_input, req, res) => {
      const since = lastEventId(req, BigInt(Number.MAX_SAFE_INTEGER));
      await streamAllRuns(req, res, deps, since === undefined ? undefined : Number(since));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipeline-runs/:id/events/stream',
      tag: 'pipelines',
      summary:
        "Server-Sent Events of one run: `snapshot` (the run), `job` (a job's new status, execution, exit code, timing), then `completed` (the final run) and the end of the stream. " +
        'Events carry ids; with Last-Event-ID (a reconnecting EventSource sends it) there is no snapshot, only the jobs changed since that event, then live ones',
      params: IdParams,
      headers: lastEventIdHeader('the id of the last event received: no snapshot, only the jobs changed since'),
      responses: {
        200: { description: 'event stream', schema: PipelineRun, contentType: 'text/event-stream' },
        400: { description: 'Last-Event-ID is not an event id' },
        404: { description: 'no such run' },
      },
    },
    async ({ params }, req, res) => {
      const since = lastEventId(req);
      const first = await runs.getRunForEvents(db, params.id);
      if (!first) throw new NotFoundError('pipeline run', params.id);
      streamRun(req, res, deps, first, since === undefined ? null : await runs.jobsChangedSince(db, params.id, since));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/pipeline-runs/:id',
      tag: 'pipelines',
      summary: "A pipeline run: its status and each job's status and execution",
      params: IdParams,
      responses: { 200: { description: 'the run', schema: PipelineRun }, 404: { description: 'no such run' } },
    },
    async ({ params }, _req, res) => {
      const run = await runs.getRun(db, params.id);
      if (!run) throw new NotFoundError('pipeline run', params.id);
      res.json(run);
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/pipeline-runs/:id/cancel',
      tag: 'pipelines',
      summary: 'Cancel a run: nothing more starts, waiting jobs are skipped, queued and running executions are cancelled',
      params: IdParams,
      responses: {
        202: { description: 'the run as it is now; it ends once its executions stopped', schema: PipelineRun },
        404: { description: 'no such run' },
        409: { description: 'the run already ended' },
        502: { description: 'worker-manager answered badly; nothing more will start, and the executions it did not cancel are cancelled when the cancel is sent again or the orchestrator restarts' },
        503: { description: 'worker-manager did not answer; nothing more will start, and the executions it did not cancel are cancelled when the cancel is sent again or the orchestrator restarts' },
      },
    },
    async ({ params }, _req, res) => {
      res.status(202).json(await runner.cancel(params.id));
    },
  );
}
