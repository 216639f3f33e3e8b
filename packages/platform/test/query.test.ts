// Query parameters on every route of the three services, as each service's OpenAPI document
// declares them: a parameter a route does not declare, and a whole number that is empty or not
// one, are a 400 problem+json naming the parameter.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startScheduler } from '../../../services/scheduler/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';
import { createTestEnv, type RunningService } from '../src/index.js';

const env = createTestEnv();
const services: Record<string, RunningService> = {};

interface Parameter { name: string; in: string; schema: { type?: string; pattern?: string; enum?: unknown[]; default?: unknown; anyOf?: Array<{ type?: string }> } }
interface Route { service: string; method: string; path: string; query: Parameter[] }

const ANY_ID = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';

async function routes(): Promise<Route[]> {
  const all: Route[] = [];
  for (const [service, svc] of Object.entries(services)) {
    const doc = (await fetch(`${svc.url}/openapi.json`).then((r) => r.json())) as { paths: Record<string, Record<string, { parameters?: Parameter[] }>> };
    for (const [path, methods] of Object.entries(doc.paths)) {
      if (!path.startsWith('/api/')) continue;
      for (const [method, op] of Object.entries(methods)) {
        all.push({ service, method, path, query: (op.parameters ?? []).filter((p) => p.in === 'query') });
      }
    }
  }
  return all;
}

async function call(r: Route, query: string) {
  const url = `${services[r.service]!.url}${r.path.replace(/\{[a-z_]+\}/g, ANY_ID)}?${query}`;
  const res = await fetch(url, { method: r.method.toUpperCase(), headers: { 'content-type': 'application/json' }, body: r.method === 'get' || r.method === 'delete' ? undefined : '{}' });
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as { detail: string; errors?: Array<{ path: string; message: string }> } };
}

const isInteger = (p: Parameter) => p.schema.type === 'integer' || (p.schema.anyOf ?? []).some((s) => s.type === 'integer');

beforeAll(async () => {
  services['worker-manager'] = await startWorkerManager(env.config('worker-manager'));
  services.scheduler = await startScheduler(env.config('scheduler'));
  services.orchestrator = await startOrchestrator(env.config('orchestrator'));
});
afterAll(async () => {
  for (const svc of Object.values(services)) await svc.stop();
  await env.cleanup();
});

describe('query parameters', () => {
  it('a parameter a route does not declare is a 400 naming it and what the route takes, on every route', async () => {
    const all = await routes();
    expect(all.length).toBeGreaterThan(40);
    for (const r of all) {
      const res = await call(r, 'stauts=failed');
      expect([r.method, r.path, res.status, res.type, res.body.detail], JSON.stringify(res.body)).toEqual([
        r.method, r.path, 400, expect.stringContaining('application/problem+json'), 'invalid query: stauts',
      ]);
      const takes = r.query.length ? `this route takes ${r.query.map((p) => p.name).join(', ')}` : 'this route takes no query parameters';
      expect(res.body.errors).toEqual([{ path: 'stauts', message: `unknown parameter "stauts": ${takes}` }]);
    }
    const executions = await call({ service: 'worker-manager', method: 'get', path: '/api/v1/executions', query: [] }, 'stauts=failed');
    expect(executions.body.errors?.[0]?.message).toBe('unknown parameter "stauts": this route takes limit, offset, id_prefix, job_id, status, worker_id, retry_of');
  });

  it('every whole-number parameter is an integer in the OpenAPI document, and empty or not a whole number is a 400 naming it', async () => {
    const numeric = (await routes()).flatMap((r) => r.query.filter((p) => ['limit', 'offset', 'since_seq', 'tail', 'priority'].includes(p.name)).map((p) => ({ r, p })));
    expect(numeric.map(({ r, p }) => `${r.service} ${r.path} ${p.name}`)).toEqual(expect.arrayContaining([
      'orchestrator /api/v1/jobs offset',
      'orchestrator /api/v1/jobs priority',
      'scheduler /api/v1/schedules/{id}/runs offset',
      'worker-manager /api/v1/executions/{id}/logs tail',
      'worker-manager /api/v1/executions/{id}/logs since_seq',
      'worker-manager /api/v1/executions/{id}/logs limit',
      'worker-manager /api/v1/executions/{id}/logs/stream tail',
      'worker-manager /api/v1/executions/{id}/logs/stream since_seq',
    ]));
    for (const { r, p } of numeric) {
      expect([r.path, p.name, p.schema.pattern, isInteger(p)]).toEqual([r.path, p.name, undefined, true]);
      for (const value of ['', 'abc', '1.5', '-1', '1e2', ' 5', '0x10', '99999999999999999999']) {
        const res = await call(r, `${p.name}=${encodeURIComponent(value)}`);
        expect([r.path, p.name, value, res.status, res.body.errors?.map((e) => e.path)]).toEqual([r.path, p.name, value, 400, [p.name]]);
        expect(res.body.errors?.[0]?.message).toMatch(/^must be a whole number from \d+ to \d+/);
      }
    }
  });

  it('a parameter given twice is a 400 saying so, on every route and parameter (not "expected string, received array" or a wrong value)', async () => {
    const all = (await routes()).flatMap((r) => r.query.map((p) => ({ r, p })));
    expect(all.length).toBeGreaterThan(40);
    for (const { r, p } of all) {
      const res = await call(r, `${p.name}=1&${p.name}=1`);
      expect([r.path, p.name, res.status, res.type, res.body.detail, res.body.errors]).toEqual([
        r.path, p.name, 400, expect.stringContaining('application/problem+json'), `invalid query: ${p.name}`,
        [{ path: p.name, message: 'is given 2 times: give it once' }],
      ]);
    }
    // next to a parameter the route does not take, each is named for what is wrong with it
    const both = await call({ service: 'orchestrator', method: 'get', path: '/api/v1/jobs', query: [] }, 'status=failed&status=lost&stauts=x');
    expect(both.body.errors).toEqual([
      { path: 'status', message: 'is given 2 times: give it once' },
      { path: 'stauts', message: expect.stringMatching(/^unknown parameter "stauts"/) },
    ]);
  });

  it('documents each default as a value the parameter takes (force and grep_regex: \'false\', not the boolean)', async () => {
    const withDefault = (await routes()).flatMap((r) => r.query.filter((p) => p.schema.default !== undefined).map((p) => ({ r, p })));
    expect(withDefault.map(({ r, p }) => `${r.path} ${p.name}`)).toEqual(expect.arrayContaining(['/api/v1/workers/{id} force', '/api/v1/executions/{id}/logs grep_regex']));
    for (const { r, p } of withDefault) {
      const takes = p.schema.enum ?? [];
      if (p.schema.enum) expect([r.path, p.name, takes.includes(p.schema.default)]).toEqual([r.path, p.name, true]);
      else expect([r.path, p.name, typeof p.schema.default]).toEqual([r.path, p.name, p.schema.type === 'integer' ? 'number' : p.schema.type]);
    }
  });

  it('takes a whole number given as digits', async () => {
    const wm = services['worker-manager']!.url;
    expect((await fetch(`${wm}/api/v1/executions?limit=1&offset=0`)).status).toBe(200);
    expect((await fetch(`${services.orchestrator!.url}/api/v1/jobs?priority=high&offset=007`)).status).toBe(200);
    // the query is valid: the execution is what is missing
    expect((await fetch(`${wm}/api/v1/executions/${ANY_ID}/logs/stream?tail=10`)).status).toBe(404);
  });
});
