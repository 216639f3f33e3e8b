// Real responses against the OpenAPI document the service serves: each status, content type and
// JSON field of a representative set of requests must be in it (no worker runs here: the test
// publishes what a worker would).
import { conformingFetch, createTestEnv, type OpenApiDocument, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { lines, publishLines, publishStatus, until } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let doc: OpenApiDocument;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startWorkerManager(env.config('worker-manager', { urls: { orchestrator: 'http://127.0.0.1:1', scheduler: 'http://127.0.0.1:1', 'worker-manager': '' } }));
  doc = (await (await fetch(`${svc.url}/openapi.json`)).json()) as OpenApiDocument;
});
afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

describe('worker-manager responses match its OpenAPI document', () => {
  it('executions, logs, results, workers, storage and their errors', async () => {
    const problems: string[] = [];
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await conformingFetch(doc, svc.url, method, path, body);
      problems.push(...r.problems);
      return r;
    };
    const unknown = '00000000-0000-7000-8000-000000000000';
    expect((await call('GET', '/health')).status).toBe(200);
    const queued = await call('POST', '/api/v1/execute', { command: 'echo hi', env: { A: '1' }, timeout_seconds: 30 });
    expect(queued.status).toBe(202);
    const id = queued.body.id as string;
    expect((await call('GET', `/api/v1/executions/${id}`)).body.status).toBe('queued');
    await publishStatus(svc.ctx.bus, { execution_id: id, status: 'running', worker_id: unknown, started_at: new Date().toISOString() });
    await publishLines(svc.ctx.bus, id, [...lines(1, 2), ...lines(3, 3, 'stderr')]);
    await publishStatus(svc.ctx.bus, {
      execution_id: id, status: 'completed', worker_id: unknown, exit_code: 0, last_seq: 3, duration_ms: 12,
      started_at: new Date().toISOString(), finished_at: new Date().toISOString(), result: { ok: true },
    });
    await until(async () => (await call('GET', `/api/v1/executions/${id}`)).body.status === 'completed', 10_000, 'the final status');
    expect((await call('GET', '/api/v1/executions?limit=5&status=completed')).status).toBe(200);
    expect((await call('GET', `/api/v1/executions/${id}/logs?tail=2`)).body.lines).toHaveLength(2);
    expect((await call('GET', `/api/v1/executions/${id}/result`)).body).toEqual({ ok: true });
    expect((await call('POST', `/api/v1/executions/${id}/cancel`)).status).toBe(409);
    expect((await call('GET', `/api/v1/executions/${unknown}`)).status).toBe(404);
    expect((await call('GET', '/api/v1/executions/not-an-id')).status).toBe(400);
    expect((await call('GET', `/api/v1/executions/${id}/logs?since_seq=-1`)).status).toBe(400);
    expect((await call('POST', '/api/v1/execute', { command: 'x', timeout_seconds: -1 })).status).toBe(400);
    expect((await call('GET', '/api/v1/workers')).status).toBe(200);
    expect((await call('GET', `/api/v1/workers/${unknown}`)).status).toBe(404);
    expect((await call('GET', '/api/v1/storage')).status).toBe(200);
    expect((await call('POST', '/api/v1/executions/cleanup', { job_ids: [unknown] })).status).toBe(200);
    expect(problems).toEqual([]);
  });
});

describe('the document of the log stream', () => {
  it('names the Last-Event-ID header it resumes from, as it does since_seq', () => {
    const op = (doc as unknown as { paths: Record<string, { get: { parameters: { name: string; in: string }[] } }> }).paths['/api/v1/executions/{id}/logs/stream']!.get;
    expect(op.parameters.map((p) => `${p.in} ${p.name}`)).toEqual(expect.arrayContaining(['query since_seq', 'header Last-Event-ID']));
  });
});
