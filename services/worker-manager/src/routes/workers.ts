import { NotFoundError, sendCreated, sendList, type Api, type Pool } from '@hodei/platform';
import { IdParams, ManagedWorker, ManagedWorkerListQuery, WorkerStart, WorkerStatusView, WorkerStopQuery } from '@hodei/types';
import { runningOnWorker } from '../store/executions.js';
import * as store from '../store/workers.js';
import type { Supervisor } from '../workers/supervisor.js';

const tag = 'Workers';
/** How long a graceful DELETE waits for the worker to exit before answering 202 (still draining). */
const DRAIN_WAIT_MS = 2000;

export function registerWorkerRoutes(api: Api, db: Pool, supervisor: Supervisor): void {
  const find = async (id: string) => {
    const w = await store.getWorker(db, id);
    if (!w) throw new NotFoundError('worker', id);
    return w;
  };

  api.route(
    {
      method: 'post',
      path: '/api/v1/workers',
      tag,
      summary: 'Start a worker agent process on this host',
      body: WorkerStart,
      responses: { 201: { description: 'started', schema: ManagedWorker }, 503: { description: 'the worker agent is not built' } },
    },
    async ({ body }, _req, res) => {
      const w = await supervisor.start(body);
      sendCreated(res, `/api/v1/workers/${w.id}`, w);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/workers',
      tag,
      summary: 'Worker processes started here, newest first (those stopped or exited longer than HODEI_FORGET_WORKERS_AFTER_MS ago are forgotten)',
      query: ManagedWorkerListQuery,
      responses: { 200: { description: 'workers', schema: ManagedWorker.array() } },
    },
    async ({ query }, _req, res) => {
      const { rows, total } = await store.listWorkers(db, query);
      sendList(res, rows, total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/workers/:id',
      tag,
      summary: 'One worker process',
      params: IdParams,
      responses: { 200: { description: 'the worker', schema: ManagedWorker }, 404: { description: 'no such worker' } },
    },
    async ({ params }, _req, res) => {
      res.json(await find(params.id));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/workers/:id/status',
      tag,
      summary: 'Live status: pid, running executions, last heartbeat, uptime',
      params: IdParams,
      responses: { 200: { description: 'status', schema: WorkerStatusView }, 404: { description: 'no such worker' } },
    },
    async ({ params }, _req, res) => {
      const w = await find(params.id);
      const end = w.stopped_at ? Date.parse(w.stopped_at) : Date.now();
      res.json({
        id: w.id,
        status: w.status,
        pid: w.pid,
        running_executions: await runningOnWorker(db, w.id),
        last_heartbeat_at: supervisor.lastHeartbeat(w.id),
        uptime_seconds: Math.max(0, Math.round((end - Date.parse(w.started_at)) / 100) / 10),
      });
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/api/v1/workers/:id',
      tag,
      summary: 'Stop a worker: drain (running work finishes, then exit) or, with force=true, kill it and its jobs',
      params: IdParams,
      query: WorkerStopQuery,
      responses: {
        200: { description: 'the worker stopped', schema: ManagedWorker },
        202: { description: 'draining: it exits when its running executions end', schema: ManagedWorker },
        404: { description: 'no such worker' },
      },
    },
    async ({ params, query }, _req, res) => {
      await find(params.id);
      if (query.force) {
        await supervisor.kill(params.id);
        res.json(await find(params.id));
        return;
      }
      const exited = await supervisor.drain(params.id, DRAIN_WAIT_MS);
      res.status(exited ? 200 : 202).json(await find(params.id));
    },
  );
}
