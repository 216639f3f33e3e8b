import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, fieldPaths } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
const api = (method: string, path: string, body?: unknown, type?: string) => call(svc.url, method, path, body, type);

beforeAll(async () => {
  env = createTestEnv();
  svc = await startOrchestrator(env.config('orchestrator'));
});
afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

describe('pipelines', () => {
  it('creates a pipeline from the core body', async () => {
    const r = await api('POST', '/api/v1/pipelines', { name: 'build', description: 'compile things' });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'build', description: 'compile things', status: 'active' });
    expect(r.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.body.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(r.body.updated_at).toBe(r.body.created_at);
    expect(r.headers.get('location')).toBe(`/api/v1/pipelines/${r.body.id}`);
    const got = await api('GET', `/api/v1/pipelines/${r.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: r.body.id, name: 'build', jobs: [] });
  });

  it('description is optional and null when absent', async () => {
    const r = await api('POST', '/api/v1/pipelines', { name: 'no-desc' });
    expect(r.status).toBe(201);
    expect(r.body.description).toBeNull();
  });

  it('takes a YAML pipeline with inline jobs whose depends_on are names', async () => {
    const yaml = [
      'name: etl',
      'description: nightly load',
      'jobs:',
      '  - name: extract',
      '    command: echo extract',
      '  - name: transform',
      '    command: echo transform',
      '    depends_on: [extract]',
      '    priority: high',
      '  - name: load',
      '    script: |',
      '      #!/bin/sh',
      '      echo load',
      '    depends_on: [transform, extract]',
      '    tags: [db]',
      '',
    ].join('\n');
    const r = await api('POST', '/api/v1/pipelines', yaml, 'application/yaml');
    expect(r.status).toBe(201);
    const jobs = r.body.jobs as Array<{ id: string; name: string; depends_on: string[]; status: string }>;
    expect(jobs.map((j) => j.name)).toEqual(['extract', 'transform', 'load']);
    const [extract, transform, load] = jobs;
    expect(extract!.depends_on).toEqual([]);
    expect(transform!.depends_on).toEqual([extract!.id]);
    expect(load!.depends_on).toEqual([transform!.id, extract!.id]);
    expect(jobs.every((j) => j.status === 'pending')).toBe(true);

    const t = await api('GET', `/api/v1/jobs/${transform!.id}`);
    expect(t.body).toMatchObject({ pipeline_id: r.body.id, command: 'echo transform', priority: 10 });
    const l = await api('GET', `/api/v1/jobs/${load!.id}`);
    expect(l.body).toMatchObject({ script: '#!/bin/sh\necho load\n', command: null, tags: ['db'] });

    const listed = await api('GET', `/api/v1/jobs?pipeline_id=${r.body.id}`);
    expect(listed.headers.get('x-total-count')).toBe('3');
  });

  it('rejects an unknown dependency name, naming the field, and stores nothing', async () => {
    const r = await api('POST', '/api/v1/pipelines', {
      name: 'broken-deps',
      jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true' }, { name: 'c', command: 'true', depends_on: ['nope'] }],
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(fieldPaths(r)).toEqual(['jobs.2.depends_on']);
    const list = await api('GET', '/api/v1/pipelines?name=broken-deps');
    expect(list.body).toEqual([]);
  });

  it('rejects a dependency cycle and a self-dependency', async () => {
    const cycle = await api('POST', '/api/v1/pipelines', {
      name: 'cyclic',
      jobs: [
        { name: 'a', command: 'true', depends_on: ['c'] },
        { name: 'b', command: 'true', depends_on: ['a'] },
        { name: 'c', command: 'true', depends_on: ['b'] },
      ],
    });
    expect(cycle.status).toBe(400);
    expect(fieldPaths(cycle)[0]).toMatch(/^jobs\.\d\.depends_on$/);
    expect(cycle.body.errors[0].message).toContain('cycle');
    const self = await api('POST', '/api/v1/pipelines', { name: 'selfish', jobs: [{ name: 'x', command: 'true' }, { name: 'a', command: 'true', depends_on: ['a'] }] });
    expect(self.status).toBe(400);
    expect(fieldPaths(self)).toEqual(['jobs.1.depends_on']);
  });

  it('rejects duplicate inline job names', async () => {
    const r = await api('POST', '/api/v1/pipelines', { name: 'dupes', jobs: [{ name: 'a', command: 'true' }, { name: 'a', command: 'true' }] });
    expect(r.status).toBe(400);
    expect(fieldPaths(r)).toEqual(['jobs.1.name']);
  });

  it('answers a YAML syntax error with 400 giving line and column', async () => {
    const r = await api('POST', '/api/v1/pipelines', 'name: ok\njobs:\n  - name: [unclosed\n', 'application/x-yaml');
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/line \d+, column \d+/);
  });

  it('lists newest first with filters, paging and X-Total-Count', async () => {
    const names = ['p-1', 'p-2', 'p-3'];
    const ids: string[] = [];
    for (const name of names) ids.push((await api('POST', '/api/v1/pipelines', { name, description: 'list test' })).body.id);
    const all = await api('GET', '/api/v1/pipelines');
    expect(all.status).toBe(200);
    expect(Array.isArray(all.body)).toBe(true);
    const total = Number(all.headers.get('x-total-count'));
    expect(total).toBe(all.body.length);
    const created = all.body.map((p: { created_at: string }) => p.created_at);
    expect([...created].sort().reverse()).toEqual(created);

    const page = await api('GET', '/api/v1/pipelines?limit=2&offset=0');
    expect(page.body.map((p: { id: string }) => p.id)).toEqual([ids[2], ids[1]]);
    expect(page.headers.get('x-total-count')).toBe(String(total));
    const next = await api('GET', '/api/v1/pipelines?limit=2&offset=1');
    expect(next.body[0].id).toBe(ids[1]);

    const byName = await api('GET', '/api/v1/pipelines?name=p-2');
    expect(byName.body.map((p: { id: string }) => p.id)).toEqual([ids[1]]);
    expect(byName.headers.get('x-total-count')).toBe('1');

    await api('PATCH', `/api/v1/pipelines/${ids[0]}`, { status: 'archived' });
    const archived = await api('GET', '/api/v1/pipelines?status=archived');
    expect(archived.body.map((p: { id: string }) => p.id)).toEqual([ids[0]]);
    const active = await api('GET', '/api/v1/pipelines?status=active');
    expect(active.body.map((p: { id: string }) => p.id)).not.toContain(ids[0]);
  });

  it('patches name, description and status', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'old', description: 'd' })).body;
    const r = await api('PATCH', `/api/v1/pipelines/${p.id}`, { name: 'new', description: null });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: p.id, name: 'new', description: null, status: 'active' });
    expect(r.body.updated_at >= p.updated_at).toBe(true);
    const archived = await api('PATCH', `/api/v1/pipelines/${p.id}`, 'status: archived\n', 'application/yaml');
    expect(archived.body.status).toBe('archived');
    // an archived pipeline takes no new jobs
    const job = await api('POST', '/api/v1/jobs', { pipeline_id: p.id });
    expect(job.status).toBe(409);
    const bad = await api('PATCH', `/api/v1/pipelines/${p.id}`, { status: 'deleted' });
    expect(bad.status).toBe(400);
    expect(fieldPaths(bad)).toEqual(['status']);
  });

  it('deletes a pipeline with its jobs', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'gone', jobs: [{ name: 'a', command: 'true' }] })).body;
    const jobId = p.jobs[0].id;
    const del = await api('DELETE', `/api/v1/pipelines/${p.id}`);
    expect(del.status).toBe(204);
    expect((await api('GET', `/api/v1/pipelines/${p.id}`)).status).toBe(404);
    expect((await api('GET', `/api/v1/jobs/${jobId}`)).status).toBe(404);
    expect((await api('DELETE', `/api/v1/pipelines/${p.id}`)).status).toBe(404);
  });

  it('answers 404 for a missing pipeline and 400 for a bad id', async () => {
    const missing = await api('GET', '/api/v1/pipelines/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
    expect((await api('PATCH', '/api/v1/pipelines/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11', { name: 'x' })).status).toBe(404);
    const bad = await api('GET', '/api/v1/pipelines/not-a-uuid');
    expect(bad.status).toBe(400);
    expect(fieldPaths(bad)).toEqual(['id']);
  });

  it('documents every route in the OpenAPI document', async () => {
    const doc = (await api('GET', '/openapi.json')).body;
    for (const path of ['/api/v1/pipelines', '/api/v1/pipelines/{id}', '/api/v1/jobs', '/api/v1/jobs/{id}', '/api/v1/jobs/{id}/cancel', '/api/v1/stats', '/api/v1/cleanup', '/api/v1/pipelines/{id}/runs', '/api/v1/pipeline-runs/{id}', '/api/v1/pipeline-runs/{id}/cancel'])
      expect(Object.keys(doc.paths)).toContain(path);
    // a run answers 202 with its Location, as a created resource does
    expect(Object.keys(doc.paths['/api/v1/pipelines/{id}/runs'].post.responses['202'].headers ?? {})).toEqual(['Location']);
  });
});
