// Worker registry: register (core), list/read with free capacity (core), heartbeat (core), deregister.
import { newId, NotFoundError, sendList, type Api } from '@hodei/platform';
import { HeartbeatAck, HeartbeatBody, IdParams, RegistryWorker, WorkerListQuery, WorkerRegister, z } from '@hodei/types';
import type { WorkerStore } from '../store/workers.js';

const TAG = 'workers';

type Heartbeat = (id: string, status: 'online' | 'draining', running: string[]) => Promise<HeartbeatAck | null>;

export function registerWorkerRoutes(api: Api, store: WorkerStore, heartbeat: Heartbeat, onCapacity: () => void, onDeregistered: (id: string) => void): void {
  api.route(
    {
      method: 'post',
      path: '/api/v1/workers',
      tag: TAG,
      summary: 'Register a worker (201); registering an existing id again updates it and sets it online (200)',
      body: WorkerRegister,
      responses: {
        201: { description: 'registered', schema: RegistryWorker },
        200: { description: 're-registered: the worker existed and was updated', schema: RegistryWorker, location: true },
      },
    },
    async ({ body }, _req, res) => {
      const { worker, created } = await store.register(body.id ?? newId(), body);
      onCapacity();
      res.status(created ? 201 : 200).location(`/api/v1/workers/${worker.id}`).json(worker);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/workers',
      tag: TAG,
      summary: 'List registered workers, newest first, with free capacity',
      query: WorkerListQuery,
      responses: { 200: { description: 'workers', schema: z.array(RegistryWorker) } },
    },
    async ({ query }, _req, res) => {
      const { items, total } = await store.list(query);
      sendList(res, items, total);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/api/v1/workers/:id',
      tag: TAG,
      summary: 'Read a worker with its free capacity and running executions',
      params: IdParams,
      responses: { 200: { description: 'the worker', schema: RegistryWorker }, 404: { description: 'no such worker' } },
    },
    async ({ params }, _req, res) => {
      const w = await store.get(params.id);
      if (!w) throw new NotFoundError('worker', params.id);
      res.json(w);
    },
  );

  api.route(
    {
      method: 'post',
      path: '/api/v1/workers/:id/heartbeat',
      tag: TAG,
      summary:
        'Heartbeat of an external worker (body optional: status online|draining, running_executions). As over NATS, ' +
        'written_off names the running_executions recorded over (lost, cancelled, ended) or placed on another worker: the worker must kill them',
      params: IdParams,
      body: HeartbeatBody,
      responses: { 200: { description: 'recorded', schema: HeartbeatAck }, 404: { description: 'no such worker' } },
    },
    async ({ params, body }, _req, res) => {
      const hb = await heartbeat(params.id, body.status ?? 'online', body.running_executions ?? []);
      if (!hb) throw new NotFoundError('worker', params.id);
      res.json(hb);
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/api/v1/workers/:id',
      tag: TAG,
      summary: 'Deregister a worker (status stopped; it takes no more work). A live agent is told to drain (or, having missed that, learns it from its next heartbeat\'s answer): it finishes what runs, then exits',
      params: IdParams,
      responses: { 200: { description: 'deregistered', schema: RegistryWorker }, 404: { description: 'no such worker' } },
    },
    async ({ params }, _req, res) => {
      if (!(await store.setStatus(params.id, 'stopped'))) throw new NotFoundError('worker', params.id);
      onDeregistered(params.id);
      res.json(await store.get(params.id));
    },
  );
}
