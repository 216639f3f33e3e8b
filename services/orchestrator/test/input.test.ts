// Bad input on every route that takes a body or an id: always a 4xx problem naming the field,
// never a 500, and the service stays healthy.
import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, fieldPaths, type Reply } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let jobId: string;
let pipelineId: string;
const api = (method: string, path: string, body?: unknown, type?: string) => call(svc.url, method, path, body, type);

beforeAll(async () => {
  env = createTestEnv();
  svc = await startOrchestrator(env.config('orchestrator'));
  pipelineId = (await api('POST', '/api/v1/pipelines', { name: 'input' })).body.id;
  jobId = (await api('POST', '/api/v1/jobs', { name: 'input', command: 'true' })).body.id;
});
afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

const writes = () => [
  { method: 'POST', path: '/api/v1/pipelines' },
  { method: 'PATCH', path: `/api/v1/pipelines/${pipelineId}` },
  { method: 'POST', path: '/api/v1/jobs' },
  { method: 'PATCH', path: `/api/v1/jobs/${jobId}` },
  { method: 'POST', path: '/api/v1/cleanup' },
];

function expectProblem(r: Reply, status: number, what: string): void {
  expect(r.status, what).toBe(status);
  expect(r.headers.get('content-type'), what).toContain('application/problem+json');
  expect(r.body.status, what).toBe(status);
  expect(JSON.stringify(r.body), what).not.toMatch(/at .*\.ts:\d+|SELECT|INSERT/);
}

describe('bad input', () => {
  it('malformed JSON → 400 naming the body', async () => {
    for (const w of writes()) {
      const r = await api(w.method, w.path, '{"name": "x",');
      expectProblem(r, 400, `${w.method} ${w.path}`);
      expect(fieldPaths(r)).toEqual(['body']);
    }
  });

  it('text/plain → 415', async () => {
    for (const w of writes()) expectProblem(await api(w.method, w.path, 'name=x', 'text/plain'), 415, `${w.method} ${w.path}`);
  });

  it('a 5 MiB body (over the 4mb default) → 413', async () => {
    const big = JSON.stringify({ name: 'x', description: 'a'.repeat(5 * 1024 * 1024) });
    for (const w of writes()) expectProblem(await api(w.method, w.path, big), 413, `${w.method} ${w.path}`);
    const bigYaml = `name: x\ndescription: ${'a'.repeat(5 * 1024 * 1024)}\n`;
    expectProblem(await api('POST', '/api/v1/jobs', bigYaml, 'application/yaml'), 413, 'yaml job');
  });

  it('a body that is not an object → 400', async () => {
    for (const w of writes()) {
      for (const body of ['[]', '"x"', '42', 'null']) expectProblem(await api(w.method, w.path, body), 400, `${w.method} ${w.path} ${body}`);
    }
    expectProblem(await api('POST', '/api/v1/jobs', '- a\n- b\n', 'application/yaml'), 400, 'yaml list');
  });

  it('a YAML body with no document (comments only, ~) → 400 naming the body, as JSON null; an empty one is {} as in JSON', async () => {
    const before = (await api('GET', '/api/v1/jobs')).headers.get('x-total-count');
    for (const yaml of ['# the job comes later\n', '~\n', 'null', '  \n']) {
      const r = await api('POST', '/api/v1/jobs', yaml, 'application/yaml');
      expectProblem(r, 400, JSON.stringify(yaml));
      expect(r.body.errors, JSON.stringify(yaml)).toEqual([{ path: 'body', message: 'holds no YAML document: give a mapping' }]);
    }
    expect((await api('GET', '/api/v1/jobs')).headers.get('x-total-count')).toBe(before);
    for (const type of ['application/json', 'application/yaml']) {
      const r = await api('PATCH', `/api/v1/jobs/${jobId}`, '', type);
      expect([r.status, r.body.name], type).toEqual([200, 'input']);
    }
  });

  it('wrong types, unknown enum values and out-of-range numbers name the field', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/api/v1/pipelines', { name: 42 }, 'name'],
      ['POST', '/api/v1/pipelines', { name: '' }, 'name'],
      ['POST', '/api/v1/pipelines', { name: '   ' }, 'name'],
      ['POST', '/api/v1/pipelines', { name: 'x'.repeat(201) }, 'name'],
      ['POST', '/api/v1/pipelines', { description: 'no name' }, 'name'],
      ['POST', '/api/v1/pipelines', { name: 'x', jobs: {} }, 'jobs'],
      ['POST', '/api/v1/pipelines', { name: 'x', jobs: [{ command: 'true' }] }, 'jobs.0.name'],
      ['POST', '/api/v1/pipelines', { name: 'x', jobs: [{ name: 'a', pipeline_id: pipelineId }] }, 'jobs.0.pipeline_id'],
      ['POST', '/api/v1/pipelines', { name: 'x', jobs: [{ name: 'a', priority: 99 }] }, 'jobs.0.priority'],
      ['POST', '/api/v1/pipelines', { name: 'x', status: 'archived' }, 'status'],
      ['PATCH', `/api/v1/pipelines/${pipelineId}`, { status: 'paused' }, 'status'],
      ['PATCH', `/api/v1/pipelines/${pipelineId}`, { name: null }, 'name'],
      ['POST', '/api/v1/jobs', { pipeline_id: 'nope' }, 'pipeline_id'],
      ['POST', '/api/v1/jobs', { command: 42 }, 'command'],
      ['POST', '/api/v1/jobs', { command: '' }, 'command'],
      ['POST', '/api/v1/jobs', { command: 'a', script: 'b' }, 'script'],
      ['POST', '/api/v1/jobs', { command: 'a', script: 'b' }, 'command'],
      ['POST', '/api/v1/jobs', { priority: 'urgent' }, 'priority'],
      ['POST', '/api/v1/jobs', { priority: 0 }, 'priority'],
      ['POST', '/api/v1/jobs', { priority: 2.5 }, 'priority'],
      ['POST', '/api/v1/jobs', { timeout_seconds: -1 }, 'timeout_seconds'],
      ['POST', '/api/v1/jobs', { timeout_seconds: 1e12 }, 'timeout_seconds'],
      ['POST', '/api/v1/jobs', { max_retries: -3 }, 'max_retries'],
      ['POST', '/api/v1/jobs', { max_retries: 1e20 }, 'max_retries'],
      ['POST', '/api/v1/jobs', { resources: { cpu_cores: -1 } }, 'resources.cpu_cores'],
      ['POST', '/api/v1/jobs', { resources: { memory_bytes: 2 ** 60 } }, 'resources.memory_bytes'],
      ['POST', '/api/v1/jobs', { env: { 'BAD-NAME': 'x' } }, 'env.BAD-NAME'],
      ['POST', '/api/v1/jobs', { env: { A: 1 } }, 'env.A'],
      ['POST', '/api/v1/jobs', { args: 'not-a-list' }, 'args'],
      ['POST', '/api/v1/jobs', { working_dir: 'build' }, 'working_dir'],
      ['PATCH', `/api/v1/jobs/${jobId}`, { working_dir: './x' }, 'working_dir'],
      ['POST', '/api/v1/jobs', { tags: [1] }, 'tags.0'],
      ['POST', '/api/v1/jobs', { depends_on: ['x'] }, 'depends_on.0'],
      ['POST', '/api/v1/jobs', { status: 'running' }, 'status'],
      ['PATCH', `/api/v1/jobs/${jobId}`, { priority: 'huge' }, 'priority'],
      ['PATCH', `/api/v1/jobs/${jobId}`, { timeout_seconds: 0 }, 'timeout_seconds'],
    ];
    for (const [method, path, body, field] of cases) {
      const r = await api(method, path, body);
      const what = `${method} ${path} ${JSON.stringify(body)}`;
      expectProblem(r, 400, what);
      expect(fieldPaths(r), what).toContain(field);
    }
  });

  it('a priority that is neither a number nor a name says what it takes', async () => {
    for (const [method, path, priority] of [
      ['POST', '/api/v1/jobs', 'urgent'],
      ['POST', '/api/v1/jobs', 2.5],
      ['PATCH', `/api/v1/jobs/${jobId}`, null],
    ] as const) {
      const r = await api(method, path, { priority });
      expectProblem(r, 400, `${method} ${JSON.stringify(priority)}`);
      expect(r.body.errors).toEqual([{ path: 'priority', message: 'must be a whole number from 1 to 15, or low, normal, high or critical' }]);
    }
  });

  it('a name holding a newline or a tab → 400 naming it; other characters are kept', async () => {
    for (const [method, path, body, field] of [
      ['POST', '/api/v1/jobs', { name: 'two\nlines', command: 'true' }, 'name'],
      ['PATCH', `/api/v1/jobs/${jobId}`, { name: 'tab\there' }, 'name'],
      ['POST', '/api/v1/pipelines', { name: 'bell\u0007', jobs: [{ name: 'a', command: 'true' }] }, 'name'],
      ['POST', '/api/v1/pipelines', { name: 'inline', jobs: [{ name: 'a\rb', command: 'true' }] }, 'jobs.0.name'],
      ['PATCH', `/api/v1/pipelines/${pipelineId}`, { name: '\u001b[31mred' }, 'name'],
    ] as const) {
      const r = await api(method, path, body);
      expectProblem(r, 400, `${method} ${path}`);
      expect(fieldPaths(r)).toEqual([field]);
      expect(r.body.errors[0].message).toMatch(/control characters/);
    }
    const kept = await api('POST', '/api/v1/jobs', { name: ' déploiement ✓ ', command: 'true' });
    expect([kept.status, kept.body.name]).toEqual([201, 'déploiement ✓']);
    expect((await api('DELETE', `/api/v1/jobs/${kept.body.id}`)).status).toBe(204);
  });

  it('a non-UUID id in the path → 400 naming id', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/pipelines/abc'],
      ['PATCH', '/api/v1/pipelines/abc'],
      ['DELETE', '/api/v1/pipelines/abc'],
      ['GET', '/api/v1/jobs/abc'],
      ['PATCH', '/api/v1/jobs/abc'],
      ['DELETE', '/api/v1/jobs/abc'],
      ['POST', '/api/v1/jobs/abc/cancel'],
      ['POST', '/api/v1/pipelines/abc/runs'],
      ['GET', '/api/v1/pipelines/abc/runs'],
      ['GET', '/api/v1/pipeline-runs/abc'],
      ['POST', '/api/v1/pipeline-runs/abc/cancel'],
      ['GET', "/api/v1/jobs/1'%20OR%201=1"],
    ] as const) {
      const r = await api(method, path, method === 'PATCH' ? { name: 'x' } : undefined);
      expectProblem(r, 400, `${method} ${path}`);
      expect(fieldPaths(r)).toEqual(['id']);
    }
  });

  it('bad run list queries name the parameter', async () => {
    for (const [q, field] of [['status=done', 'status'], ['limit=5000', 'limit'], ['offset=x', 'offset']] as const) {
      const r = await api('GET', `/api/v1/pipelines/${pipelineId}/runs?${q}`);
      expectProblem(r, 400, q);
      expect(fieldPaths(r)).toEqual([field]);
    }
  });

  it('an empty list filter (?name=) → 400 naming it, not every job or pipeline', async () => {
    for (const path of ['/api/v1/jobs?name=', '/api/v1/jobs?tag=', '/api/v1/jobs?status=completed&name=', '/api/v1/pipelines?name=']) {
      const r = await api('GET', path);
      expectProblem(r, 400, path);
      expect(fieldPaths(r), path).toEqual([path.endsWith('tag=') ? 'tag' : 'name']);
      expect(r.body.errors[0].message, path).toBe('must not be empty: leave the parameter out to list everything');
    }
    expect((await api('GET', '/api/v1/jobs?name=input')).body.map((j: { id: string }) => j.id)).toEqual([jobId]);
    expect((await api('GET', '/api/v1/pipelines?name=input')).body.map((p: { id: string }) => p.id)).toEqual([pipelineId]);
  });

  it('an unknown route → 404 problem', async () => {
    expectProblem(await api('GET', '/api/v1/nothing'), 404, 'unknown route');
  });

  it('the service is still healthy and unchanged afterwards', async () => {
    const h = await api('GET', '/health');
    expect(h.status).toBe(200);
    expect(h.body).toMatchObject({ status: 'ok', service: 'orchestrator', checks: { postgres: 'ok', nats: 'ok' } });
    const jobs = await api('GET', '/api/v1/jobs');
    expect(jobs.body.map((j: { id: string }) => j.id)).toEqual([jobId]);
    const pipelines = await api('GET', '/api/v1/pipelines');
    expect(pipelines.body.map((p: { id: string }) => p.id)).toEqual([pipelineId]);
    expect((await api('GET', `/api/v1/pipelines/${pipelineId}`)).body.name).toBe('input');
  });
});
