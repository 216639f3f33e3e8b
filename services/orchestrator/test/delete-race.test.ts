// A job deleted while worker-manager starts an execution of it: worker-manager has read the job's
// definition, the orchestrator does not know of the execution yet, so the DELETE succeeds. A
// stand-in in front of the orchestrator deletes the job right after worker-manager's read, which
// makes that window certain. Real orchestrator, worker-manager, scheduler and worker.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startOrchestrator } from '../src/service.js';
import { call, eventually } from './helpers.js';

let env: TestEnv;
let orchestrator: RunningService;
let scheduler: RunningService;
let workerManager: RunningService;
let proxy: Server;
let workerId: string | undefined;
/** Jobs the stand-in deletes once worker-manager has read them, with the DELETE's status. */
const deleteOnRead = new Map<string, number | null>();

/** Passes worker-manager's requests to the orchestrator; a read of a job in `deleteOnRead`
 *  answers only after the job was deleted. */
async function orchestratorProxy(target: string): Promise<Server> {
  const server = createServer((req, res) => {
    void (async () => {
      const upstream = await fetch(`${target}${req.url}`, { method: req.method, headers: { accept: 'application/json' } });
      const body = await upstream.text();
      const id = /^\/api\/v1\/jobs\/([^/?]+)$/.exec(req.url ?? '')?.[1];
      if (req.method === 'GET' && id && deleteOnRead.has(id)) {
        deleteOnRead.set(id, (await fetch(`${target}/api/v1/jobs/${id}`, { method: 'DELETE' })).status);
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(body);
    })().catch(() => {
      res.writeHead(502);
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

beforeAll(async () => {
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
  proxy = await orchestratorProxy(orchestrator.url);
  const viaProxy = { ...urls, orchestrator: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` };
  scheduler = await startScheduler(env.config('scheduler', { urls, port: ports.scheduler }));
  workerManager = await startWorkerManager(env.config('worker-manager', { urls: viaProxy, port: ports['worker-manager'], killGraceMs: 1000 }));
  const w = await call(workerManager.url, 'POST', '/api/v1/workers', { type: 'shell', name: 'delete-race', capacity: { slots: 4, cpu_cores: 4, memory_bytes: 4 * 1024 ** 3 } });
  expect(w.status).toBe(201);
  workerId = w.body.id;
  await workerOnline(scheduler.url, w.body.id, 20_000);
}, 60_000);

afterAll(async () => {
  if (workerId) await call(workerManager.url, 'DELETE', `/api/v1/workers/${workerId}?force=true`).catch(() => undefined);
  await workerManager?.stop();
  await orchestrator?.stop();
  await scheduler?.stop();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await env?.cleanup();
});

const execution = async (id: string) => (await call(workerManager.url, 'GET', `/api/v1/executions/${id}`)).body;
const ended = (id: string) => async () => {
  const e = await execution(id);
  return ['queued', 'running'].includes(e.status) ? undefined : e;
};

describe('a job deleted while an execution of it starts', () => {
  it('has that execution cancelled; other jobs and executions of no job run on', async () => {
    const doomed = (await call(orchestrator.url, 'POST', '/api/v1/jobs', { name: 'doomed', command: 'sleep 30' })).body;
    const kept = (await call(orchestrator.url, 'POST', '/api/v1/jobs', { name: 'kept', command: 'sleep 1; echo kept' })).body;
    deleteOnRead.set(doomed.id, null);

    const e = await call(workerManager.url, 'POST', '/api/v1/execute', { job_id: doomed.id });
    expect(e.status).toBe(202);
    expect(deleteOnRead.get(doomed.id)).toBe(204);
    expect((await call(orchestrator.url, 'GET', `/api/v1/jobs/${doomed.id}`)).status).toBe(404);
    const k = await call(workerManager.url, 'POST', '/api/v1/execute', { job_id: kept.id });
    const adhoc = await call(workerManager.url, 'POST', '/api/v1/execute', { command: 'sleep 1; echo adhoc' });
    expect([k.status, adhoc.status]).toEqual([202, 202]);

    const gone = await eventually(ended(e.body.id), 15_000);
    expect(gone.status).toBe('cancelled');
    expect((await eventually(ended(k.body.id), 15_000)).status).toBe('completed');
    expect((await eventually(ended(adhoc.body.id), 15_000)).status).toBe('completed');
    const job = await eventually(async () => {
      const j = (await call(orchestrator.url, 'GET', `/api/v1/jobs/${kept.id}`)).body;
      return j.status === 'completed' ? j : undefined;
    });
    expect(job.last_execution.id).toBe(k.body.id);
    expect((await call(orchestrator.url, 'GET', `/api/v1/jobs/${doomed.id}`)).status).toBe(404);
  }, 60_000);
});
