import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, fieldPaths } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
const api = (method: string, path: string, body?: unknown, type?: string) => call(svc.url, method, path, body, type);
const MISSING = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';

beforeAll(async () => {
  env = createTestEnv();
  svc = await startOrchestrator(env.config('orchestrator'));
});
afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

async function pipeline(name = 'p'): Promise<string> {
  return (await api('POST', '/api/v1/pipelines', { name })).body.id;
}

describe('jobs', () => {
  it('creates a job from {pipeline_id} alone: pending, default name, no command', async () => {
    const pid = await pipeline();
    const r = await api('POST', '/api/v1/jobs', { pipeline_id: pid });
    expect(r.status).toBe(201);
    expect(r.headers.get('location')).toBe(`/api/v1/jobs/${r.body.id}`);
    expect(r.body).toMatchObject({
      pipeline_id: pid,
      status: 'pending',
      command: null,
      script: null,
      args: [],
      env: {},
      priority: 5,
      tags: [],
      labels: {},
      max_retries: 0,
      depends_on: [],
      last_execution: null,
    });
    expect(r.body.name).toMatch(/^job-[0-9a-f]{8}$/);
    expect(r.body.created_at).toMatch(/\.\d{3}Z$/);
    const got = await api('GET', `/api/v1/jobs/${r.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toEqual(r.body);
  });

  it('creates a full job definition', async () => {
    const body = {
      name: 'nightly-etl',
      description: 'load it all',
      command: 'echo hi; sleep 1',
      args: ['--fast'],
      env: { KEY: 'value' },
      working_dir: '/tmp',
      timeout_seconds: 1800,
      priority: 'critical',
      resources: { cpu_cores: 1.5, memory_bytes: 268435456 },
      tags: ['etl', 'nightly'],
      labels: { pool: 'default' },
      max_retries: 2,
      retry_backoff_seconds: 30,
    };
    const r = await api('POST', '/api/v1/jobs', body);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ ...body, priority: 15, pipeline_id: null, status: 'pending' });
  });

  it('takes a YAML job', async () => {
    const yaml = 'name: from-yaml\ncommand: |\n  echo one\n  echo two\npriority: low\ntags: [yaml]\nenv:\n  A: "1"\n';
    const r = await api('POST', '/api/v1/jobs', yaml, 'application/yaml');
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: 'from-yaml', command: 'echo one\necho two\n', priority: 1, tags: ['yaml'], env: { A: '1' } });
  });

  it('answers a YAML syntax error with line and column', async () => {
    const r = await api('POST', '/api/v1/jobs', 'name: a\ncommand: "unterminated\n', 'application/yaml');
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/line \d+, column \d+/);
  });

  it('answers an unknown pipeline_id with 404 naming the field (a missing resource, as a missing job_id is to POST /execute)', async () => {
    const r = await api('POST', '/api/v1/jobs', { pipeline_id: MISSING });
    expect([r.status, r.body.errors]).toEqual([404, [{ path: 'pipeline_id', message: `pipeline ${MISSING} not found` }]]);
    const job = (await api('POST', '/api/v1/jobs', { name: 'stays' })).body;
    const moved = await api('PATCH', `/api/v1/jobs/${job.id}`, { pipeline_id: MISSING });
    expect([moved.status, fieldPaths(moved)]).toEqual([404, ['pipeline_id']]);
    expect((await api('GET', `/api/v1/jobs/${job.id}`)).body.pipeline_id).toBeNull();
  });

  it('checks depends_on: same pipeline only, and no cycles through PATCH', async () => {
    const pid = await pipeline('deps');
    const other = await pipeline('other');
    const a = (await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'a', command: 'true' })).body;
    const elsewhere = (await api('POST', '/api/v1/jobs', { pipeline_id: other, name: 'x' })).body;
    const b = await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'b', depends_on: [a.id] });
    expect(b.status).toBe(201);
    expect(b.body.depends_on).toEqual([a.id]);

    const foreign = await api('POST', '/api/v1/jobs', { pipeline_id: pid, depends_on: [a.id, elsewhere.id] });
    expect(foreign.status).toBe(400);
    expect(fieldPaths(foreign)).toEqual(['depends_on.1']);
    const noPipeline = await api('POST', '/api/v1/jobs', { command: 'true', depends_on: [a.id] });
    expect(noPipeline.status).toBe(400);
    expect(fieldPaths(noPipeline)).toEqual(['depends_on']);

    const cycle = await api('PATCH', `/api/v1/jobs/${a.id}`, { depends_on: [b.body.id] });
    expect(cycle.status).toBe(400);
    expect(fieldPaths(cycle)).toEqual(['depends_on']);
    const self = await api('PATCH', `/api/v1/jobs/${a.id}`, { depends_on: [a.id] });
    expect(self.status).toBe(400);
    expect(fieldPaths(self)).toEqual(['depends_on.0']);

    // a moves away while b depends on it → conflict naming pipeline_id and b
    const move = await api('PATCH', `/api/v1/jobs/${a.id}`, { pipeline_id: other });
    expect([move.status, fieldPaths(move)]).toEqual([409, ['pipeline_id']]);
    expect(move.body.detail).toBe(`job ${b.body.id} of pipeline ${pid} depends on this job: it cannot move to another pipeline (change their depends_on first)`);

    // deleting a drops it from b's depends_on
    expect((await api('DELETE', `/api/v1/jobs/${a.id}`)).status).toBe(204);
    expect((await api('GET', `/api/v1/jobs/${b.body.id}`)).body.depends_on).toEqual([]);
    const p = await api('GET', `/api/v1/pipelines/${pid}`);
    expect(p.body.jobs).toEqual([{ id: b.body.id, name: 'b', depends_on: [], status: 'pending' }]);
  });

  it('moving a job that depends on others out of its pipeline without depends_on → 409 naming pipeline_id, nothing changed', async () => {
    const pid = await pipeline('move-deps');
    const other = await pipeline('move-deps-target');
    const a = (await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'a', command: 'true' })).body;
    const b = (await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'b', command: 'true', depends_on: [a.id] })).body;
    for (const target of [null, other]) {
      const r = await api('PATCH', `/api/v1/jobs/${b.id}`, { pipeline_id: target });
      expect([r.status, fieldPaths(r)], JSON.stringify(r.body)).toEqual([409, ['pipeline_id']]);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(r.body.detail).toBe(r.body.errors[0].message);
      expect(r.body.detail).toContain(`depends on 1 job of pipeline ${pid} (depends_on: ${a.id})`);
      expect(r.body.detail).toContain(target ? `send depends_on (jobs of pipeline ${other}, or [])` : 'send "depends_on": []');
    }
    const kept = await api('GET', `/api/v1/jobs/${b.id}`);
    expect([kept.body.pipeline_id, kept.body.depends_on]).toEqual([pid, [a.id]]);
    // with depends_on given too it moves
    const moved = await api('PATCH', `/api/v1/jobs/${b.id}`, { pipeline_id: null, depends_on: [] });
    expect([moved.status, moved.body.pipeline_id, moved.body.depends_on]).toEqual([200, null, []]);
  });

  it('deleting a job in the middle of a chain keeps its dependants after what it depended on', async () => {
    const p = await api('POST', '/api/v1/pipelines', {
      name: 'chain',
      jobs: [
        { name: 'fetch', command: 'true' },
        { name: 'build', command: 'true' },
        { name: 'test', command: 'true', depends_on: ['build', 'fetch'] },
        { name: 'deploy', command: 'true', depends_on: ['test', 'build'] },
        { name: 'notify', command: 'true', depends_on: ['test'] },
      ],
    });
    expect(p.status).toBe(201);
    const id = Object.fromEntries(p.body.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
    expect((await api('DELETE', `/api/v1/jobs/${id.test}`)).status).toBe(204);
    const after = (await api('GET', `/api/v1/pipelines/${p.body.id}`)).body.jobs as Array<{ name: string; depends_on: string[] }>;
    expect(Object.fromEntries(after.map((j) => [j.name, j.depends_on]))).toEqual({
      fetch: [],
      build: [],
      deploy: [id.build, id.fetch],
      notify: [id.build, id.fetch],
    });
  });

  it('refuses a second job of the same name in a pipeline (create, rename, move) with a 409 naming name', async () => {
    const pid = await pipeline('unique-names');
    const other = await pipeline('other-names');
    const a = (await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'build', command: 'true' })).body;
    const again = await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'build', command: 'make' });
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toContain('application/problem+json');
    expect(fieldPaths(again)).toEqual(['name']);
    expect(again.body.detail).toContain(pid);
    expect(again.body.detail).toContain('"build"');
    const yaml = await api('POST', '/api/v1/jobs', `pipeline_id: ${pid}\nname: build\ncommand: make\n`, 'application/yaml');
    expect(yaml.status).toBe(409);
    // the same name elsewhere is fine: another pipeline, or no pipeline at all (twice)
    const elsewhere = await api('POST', '/api/v1/jobs', { pipeline_id: other, name: 'build', command: 'true' });
    expect(elsewhere.status).toBe(201);
    for (let i = 0; i < 2; i++) expect((await api('POST', '/api/v1/jobs', { name: 'build', command: 'true' })).status).toBe(201);

    const b = (await api('POST', '/api/v1/jobs', { pipeline_id: pid, name: 'test', command: 'true' })).body;
    const rename = await api('PATCH', `/api/v1/jobs/${b.id}`, { name: 'build', command: 'false' });
    expect(rename.status).toBe(409);
    expect(fieldPaths(rename)).toEqual(['name']);
    const move = await api('PATCH', `/api/v1/jobs/${elsewhere.body.id}`, { pipeline_id: pid });
    expect(move.status).toBe(409);
    expect(fieldPaths(move)).toEqual(['name']);
    expect(move.body.detail).toContain(pid);
    // nothing of a refused PATCH was applied; renaming to a free name, or to its own name, works
    expect((await api('GET', `/api/v1/jobs/${b.id}`)).body).toMatchObject({ name: 'test', command: 'true' });
    expect((await api('GET', `/api/v1/jobs/${elsewhere.body.id}`)).body.pipeline_id).toBe(other);
    expect((await api('PATCH', `/api/v1/jobs/${a.id}`, { name: 'build', priority: 'high' })).status).toBe(200);
    expect((await api('PATCH', `/api/v1/jobs/${b.id}`, { name: 'unit-test' })).body.name).toBe('unit-test');
    const p = (await api('GET', `/api/v1/pipelines/${pid}`)).body;
    expect(p.jobs.map((j: { name: string }) => j.name)).toEqual(['build', 'unit-test']);
  });

  it('two PATCHes that together would close a cycle, sent at once: one is refused', async () => {
    const pairs = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const p = (await api('POST', '/api/v1/pipelines', { name: `race-${i}`, jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true' }] })).body;
        return { pid: p.id as string, a: p.jobs[0].id as string, b: p.jobs[1].id as string };
      }),
    );
    const answers = await Promise.all(
      pairs.map(({ a, b }) => Promise.all([api('PATCH', `/api/v1/jobs/${a}`, { depends_on: [b] }), api('PATCH', `/api/v1/jobs/${b}`, { depends_on: [a] })])),
    );
    for (const [i, pair] of answers.entries()) {
      expect(pair.map((r) => r.status).sort(), `pipeline ${i}`).toEqual([200, 400]);
      const jobsOf = (await api('GET', `/api/v1/pipelines/${pairs[i]!.pid}`)).body.jobs as Array<{ depends_on: string[] }>;
      expect(jobsOf.filter((j) => j.depends_on.length)).toHaveLength(1);
    }
  });

  it('patches a job; command and script replace each other', async () => {
    const j = (await api('POST', '/api/v1/jobs', { name: 'p1', command: 'echo a', tags: ['x'] })).body;
    const r = await api('PATCH', `/api/v1/jobs/${j.id}`, { script: '#!/bin/sh\necho b', priority: 'high', description: 'now a script' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: j.id, name: 'p1', command: null, script: '#!/bin/sh\necho b', priority: 10, description: 'now a script', tags: ['x'] });
    expect(r.body.updated_at >= j.updated_at).toBe(true);
    const y = await api('PATCH', `/api/v1/jobs/${j.id}`, 'command: echo c\n', 'application/yaml');
    expect(y.body).toMatchObject({ command: 'echo c', script: null });
    const both = await api('PATCH', `/api/v1/jobs/${j.id}`, { command: 'a', script: 'b' });
    expect(both.status).toBe(400);
    expect(fieldPaths(both)).toEqual(['command', 'script']);
    expect((await api('PATCH', `/api/v1/jobs/${MISSING}`, { name: 'x' })).status).toBe(404);
  });

  it('clears timeout_seconds and working_dir with null in a PATCH (JSON or YAML)', async () => {
    const j = (await api('POST', '/api/v1/jobs', { name: 'clear', command: 'true', timeout_seconds: 60, working_dir: '/tmp' })).body;
    const r = await api('PATCH', `/api/v1/jobs/${j.id}`, { timeout_seconds: null });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ timeout_seconds: null, working_dir: '/tmp' });
    const y = await api('PATCH', `/api/v1/jobs/${j.id}`, 'working_dir: null\n', 'application/yaml');
    expect(y.status).toBe(200);
    expect((await api('GET', `/api/v1/jobs/${j.id}`)).body).toMatchObject({ timeout_seconds: null, working_dir: null, command: 'true' });
    const zero = await api('PATCH', `/api/v1/jobs/${j.id}`, { timeout_seconds: 0 });
    expect(zero.status).toBe(400);
    expect(fieldPaths(zero)).toEqual(['timeout_seconds']);
  });

  it('lists with filters, paging and X-Total-Count, newest first', async () => {
    const pid = await pipeline('listing');
    const made: string[] = [];
    const specs = [
      { name: 'l-a', tags: ['red'], priority: 1 },
      { name: 'l-b', tags: ['red', 'blue'], priority: 10 },
      { name: 'l-c', tags: ['blue'], priority: 10 },
      { name: 'l-d', tags: [], priority: 15 },
    ];
    for (const s of specs) made.push((await api('POST', '/api/v1/jobs', { pipeline_id: pid, command: 'true', ...s })).body.id);
    const all = await api('GET', `/api/v1/jobs?pipeline_id=${pid}`);
    expect(all.status).toBe(200);
    expect(all.body.map((j: { id: string }) => j.id)).toEqual([...made].reverse());
    expect(all.headers.get('x-total-count')).toBe('4');

    const ids = async (q: string) => (await api('GET', `/api/v1/jobs?pipeline_id=${pid}&${q}`)).body.map((j: { id: string }) => j.id);
    expect(await ids('tag=red')).toEqual([made[1], made[0]]);
    expect(await ids('priority=10')).toEqual([made[2], made[1]]);
    expect(await ids('priority=high')).toEqual([made[2], made[1]]);
    expect(await ids('priority=critical')).toEqual([made[3]]);
    expect(await ids('name=l-c')).toEqual([made[2]]);
    expect(await ids('status=pending')).toHaveLength(4);
    expect(await ids('status=running')).toEqual([]);
    // UUIDv7: made a moment apart, they share their first characters and differ in the last ones
    expect(await ids(`id_prefix=${made[1]!.slice(0, 8)}`)).toEqual([...made].reverse());
    expect(await ids(`id_prefix=${made[1]!.toUpperCase()}`)).toEqual([made[1]]);
    expect(await ids(`id_prefix=${made[1]!.slice(0, 30)}&tag=blue`)).toEqual([made[1]]);

    const page = await api('GET', `/api/v1/jobs?pipeline_id=${pid}&limit=2&offset=1`);
    expect(page.body.map((j: { id: string }) => j.id)).toEqual([made[2], made[1]]);
    expect(page.headers.get('x-total-count')).toBe('4');
    const beyond = await api('GET', `/api/v1/jobs?pipeline_id=${pid}&offset=100`);
    expect(beyond.body).toEqual([]);
    expect(beyond.headers.get('x-total-count')).toBe('4');
  });

  it('rejects bad list queries naming the parameter', async () => {
    for (const [q, field] of [
      ['status=done', 'status'],
      ['priority=urgent', 'priority'],
      ['priority=16', 'priority'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['offset=-1', 'offset'],
      ['pipeline_id=nope', 'pipeline_id'],
      ['id_prefix=job', 'id_prefix'],
    ] as const) {
      const r = await api('GET', `/api/v1/jobs?${q}`);
      expect(r.status, q).toBe(400);
      expect(fieldPaths(r), q).toContain(field);
    }
  });

  it('deletes a job; 404 afterwards and for unknown ids', async () => {
    const j = (await api('POST', '/api/v1/jobs', { command: 'true' })).body;
    expect((await api('DELETE', `/api/v1/jobs/${j.id}`)).status).toBe(204);
    expect((await api('GET', `/api/v1/jobs/${j.id}`)).status).toBe(404);
    expect((await api('DELETE', `/api/v1/jobs/${j.id}`)).status).toBe(404);
    expect((await api('GET', '/api/v1/jobs/12345')).status).toBe(400);
  });

  it('counts created jobs in /metrics: standalone and inline in a pipeline, not refused ones', async () => {
    const created = async () => {
      const m = /hodei_jobs_created_total\{[^}]*\} (\d+)/.exec((await api('GET', '/metrics')).body as string);
      expect(m, 'hodei_jobs_created_total in /metrics').not.toBeNull();
      return Number(m![1]);
    };
    const before = await created();
    expect((await api('POST', '/api/v1/jobs', { command: 'true' })).status).toBe(201);
    expect((await api('POST', '/api/v1/jobs', { command: 'true', priority: 99 })).status).toBe(400);
    const p = await api('POST', '/api/v1/pipelines', { name: 'counted', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true' }] });
    expect(p.status).toBe(201);
    expect((await created()) - before).toBe(3);
  });
});
