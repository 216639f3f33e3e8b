import { HttpError, NotFoundError, sendList, type Api, type Pool } from '@hodei/platform';
import {
  ExecuteRequest,
  Execution,
  ExecutionListQuery,
  ExecutionsCleanupRequest,
  ExecutionsCleanupResult,
  IdParams,
  WorkerManagerStorage,
  z,
} from '@hodei/types';
import type { Executions } from '../executions.js';
import * as store from '../store/executions.js';

const tag = 'Executions';

export function registerExecutionRoutes(api: Api, db: Pool, executions: Executions): void {
  api.route(
    {
      method: 'post',
      path: '/api/v1/execute',
      tag,
      summary: 'Run a job (by job_id, fields given here override the job\'s) or an inline definition',
      body: ExecuteRequest,
      yaml: true,
      responses: {
        202: { description: 'queued', schema: Execution, location: true },
        404: { description: 'job_id names no job' },
        413: { description: 'the body is over HODEI_BODY_LIMIT, or command + script + args + env are over what NATS carries in one message (max_payload)' },
        503: { description: 'the orchestrator or the message bus is unavailable' },
      },
    },
    async ({ body }, _req, res) => {
      const e = await executions.execute(body);
      res.status(202).location(`/api/v1/executions/${e.id}`).json(e);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions',
      tag,
      summary: 'Executions, newest first',
      query: ExecutionListQuery,
      responses: { 200: { description: 'executions', schema: Execution.array() } },
    },
    async ({ query }, _req, res) => {
      const { rows, total } = await store.listExecutions(db, query);
      sendList(res, rows.map(store.toExecution), total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions/:id',
      tag,
      summary: 'One execution; `waiting` says why a queued one is not placed yet',
      params: IdParams,
      responses: { 200: { description: 'the execution', schema: Execution }, 404: { description: 'no such execution' } },
    },
    async ({ params }, _req, res) => {
      res.json(store.toExecution(await executions.get(params.id)));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/executions/:id/cancel',
      tag,
      summary: 'Cancel: a queued execution at once, a running one by killing its process group',
      params: IdParams,
      responses: {
        202: { description: 'cancelled (queued, or running on a worker that is gone) or being cancelled (running)', schema: Execution },
        404: { description: 'no such execution' },
        409: { description: 'the execution already ended' },
        503: { description: 'its worker did not answer and is still registered online or draining, or the scheduler did not answer' },
      },
    },
    async ({ params }, _req, res) => {
      res.status(202).json(await executions.cancel(params.id));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/executions/:id/result',
      tag,
      summary: 'The JSON the job wrote to $HODEI_RESULT_FILE',
      params: IdParams,
      responses: {
        200: { description: 'the result, as the job wrote it', schema: z.unknown() },
        404: { description: 'no such execution, or it wrote no result (yet)' },
        422: { description: 'the job wrote a result file that could not be read (invalid JSON, over 1 MiB); `detail` says why' },
      },
    },
    async ({ params }, _req, res) => {
      const r = await store.getResult(db, params.id);
      if (!r) throw new NotFoundError('execution', params.id);
      if (r.result_error) {
        throw new HttpError(422, 'Unprocessable Content', `the result of execution ${params.id} is unusable: ${r.result_error}`, [
          { path: 'result', message: r.result_error },
        ]);
      }
      if (!r.has_result) throw new NotFoundError(`result of execution ${params.id}`);
      res.json(r.result);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/storage',
      tag: 'Storage',
      summary: 'Rows and bytes of executions and log lines (for the orchestrator\'s stats); past 100,000 rows, the rows as PostgreSQL estimates them',
      responses: { 200: { description: 'usage', schema: WorkerManagerStorage } },
    },
    async (_input, _req, res) => {
      res.json(await store.storageUsage(db));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/executions/cleanup',
      tag: 'Storage',
      summary: 'Delete the executions and log lines of these jobs, and those over before finished_before but the newest of each job (the orchestrator\'s cleanup); dry_run only counts them',
      body: ExecutionsCleanupRequest,
      responses: { 200: { description: 'how many executions were (or would be) deleted', schema: ExecutionsCleanupResult } },
    },
    async ({ body }, _req, res) => {
      const before = body.finished_before === undefined ? undefined : new Date(body.finished_before);
      res.json(await store.deleteForJobs(db, body.job_ids, before, body.dry_run));
    },
  );
}
