// A job deleted while worker-manager starts an execution of it: worker-manager has read the job's
// definition, the orchestrator does not know of the execution yet, so the DELETE succeeds. A
// stand-in in front of the orchestrator deletes the job right after worker-manager's read, which
// makes that window certain. Real orchestrator, worker-manager, scheduler and worker.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunningService } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, eventually } from './helpers.js';
import { startRealStack, stopRealStack, type RealStack } from './real-stack.js';

let stack: RealStack | undefined;
let orchestrator: RunningService;
let workerManager: RunningService;
let proxy: Server | undefined;
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
  stack = await startRealStack('delete-race', {
    orchestratorFor: async (url) => {
      proxy = await orchestratorProxy(url);
      return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    },
  });
  ({ orchestrator, workerManager } = stack);
}, 60_000);

afterAll(async () => {
  if (stack) await stopRealStack(stack);
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
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
