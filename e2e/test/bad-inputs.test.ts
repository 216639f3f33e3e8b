// Bad inputs against every route the three services publish in /openapi.json: malformed JSON,
// wrong types, bad UUIDs, a 5 MiB body, a wrong content type. Every answer is a 4xx in
// problem+json, and the services stay healthy after.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectProblem } from '../src/assert.js';
import { infra } from '../src/context.js';
import { call } from '../src/http.js';
import { SERVICE_NAMES, startStack, type ServiceName, type Stack } from '../src/stack.js';

let stack: Stack;
let failed = false;

interface Operation {
  service: ServiceName;
  method: string;
  path: string;
  params: { name: string; in: string; schema?: { type?: string; enum?: unknown[] } }[];
  bodySchema?: { type?: string; properties?: Record<string, Schema> };
  bodyTypes: string[];
}
interface Schema {
  $ref?: string;
  allOf?: Schema[];
  type?: string | string[];
  enum?: unknown[];
  anyOf?: Schema[];
}

const ops: Operation[] = [];

beforeAll(async () => {
  const i = infra();
  stack = await startStack({ databaseUrl: i.databaseUrl, natsUrl: i.natsUrl });
  for (const service of SERVICE_NAMES) {
    const doc = (await call(stack.urls[service], 'GET', '/openapi.json')).body as { paths: Record<string, Record<string, any>>; components?: any };
    // body schemas are references to components: follow them (and allOf) to the properties
    const resolve = (sch: any): any => {
      if (sch?.$ref) return resolve(doc.components?.schemas?.[String(sch.$ref).split('/').pop()!]);
      if (sch?.allOf) return { type: 'object', properties: Object.assign({}, ...sch.allOf.map((x: any) => resolve(x)?.properties ?? {})) };
      return sch;
    };
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
        const content = op.requestBody?.content ?? {};
        ops.push({
          service,
          method: method.toUpperCase(),
          path,
          params: op.parameters ?? [],
          bodySchema: resolve(content['application/json']?.schema),
          bodyTypes: Object.keys(content),
        });
      }
    }
  }
});

afterAll(async () => {
  if (failed && stack) process.stderr.write(`${stack.logTail(15)}\n`);
  await stack?.stop();
});

/** The path with its parameters filled: `bad` puts a non-UUID where an id goes. */
const fill = (path: string, bad: boolean) => path.replace(/\{[^}]+\}/g, () => (bad ? 'not-a-uuid' : randomUUID()));
const send = (op: Operation, path: string, body: string | undefined, contentType?: string) =>
  call(stack.urls[op.service], op.method, path, body, contentType ? { 'content-type': contentType } : {});

function wrongValue(s: Schema | undefined): unknown {
  const t = Array.isArray(s?.type) ? s.type[0] : (s?.type ?? s?.anyOf?.[0]?.type);
  if (s?.enum) return 'definitely-not-a-member';
  switch (t) {
    case 'string':
      return 12345;
    case 'number':
    case 'integer':
      return 'not-a-number';
    case 'boolean':
      return 'yes';
    case 'array':
      return 'not-an-array';
    case 'object':
      return 7;
    default:
      return undefined;
  }
}

describe('bad inputs', () => {
  it('every route publishes itself (three services, the core routes among them)', (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const names = ops.map((o) => `${o.service} ${o.method} ${o.path}`);
    for (const core of [
      'orchestrator POST /api/v1/pipelines',
      'orchestrator POST /api/v1/jobs',
      'scheduler POST /api/v1/schedule',
      'scheduler POST /api/v1/workers',
      'worker-manager POST /api/v1/execute',
      'worker-manager GET /api/v1/executions/{id}/logs',
    ])
      expect(names).toContain(core);
  });

  it('a bad UUID in a path is a 400 naming the parameter', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const withIds = ops.filter((o) => /\{[^}]+\}/.test(o.path));
    expect(withIds.length).toBeGreaterThan(10);
    for (const op of withIds) {
      const body = op.bodyTypes.length ? '{}' : undefined;
      const res = await send(op, fill(op.path, true), body, body ? 'application/json' : undefined);
      expectProblem(res, 400, `${op.service} ${op.method} ${op.path} with a bad id`);
      expect(JSON.stringify(res.body.errors ?? []), `${op.method} ${op.path}`).toMatch(/"path"/);
    }
  });

  it('malformed JSON, a non-object, a 5 MiB body (over the 4mb default) and a wrong content type are 400 / 413 / 415', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const withBody = ops.filter((o) => o.bodyTypes.includes('application/json'));
    expect(withBody.length).toBeGreaterThan(8);
    const big = JSON.stringify({ name: 'x'.repeat(5 * 1024 * 1024) });
    for (const op of withBody) {
      const path = fill(op.path, false);
      const what = `${op.service} ${op.method} ${op.path}`;
      expectProblem(await send(op, path, '{"name": "x",', 'application/json'), 400, `${what} malformed JSON`);
      expectProblem(await send(op, path, '[1, 2, 3]', 'application/json'), 400, `${what} an array body`);
      expectProblem(await send(op, path, big, 'application/json'), 413, `${what} 5 MiB body`);
      expectProblem(await send(op, path, 'name=x', 'text/plain'), 415, `${what} text/plain`);
    }
  });

  it('a field of the wrong type is a 400 naming the field', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    let checked = 0;
    for (const op of ops.filter((o) => o.bodySchema?.properties)) {
      for (const [field, schema] of Object.entries(op.bodySchema!.properties!)) {
        const value = wrongValue(schema.$ref || schema.allOf ? undefined : schema);
        if (value === undefined) continue;
        const res = await send(op, fill(op.path, false), JSON.stringify({ [field]: value }), 'application/json');
        const what = `${op.service} ${op.method} ${op.path} {${field}: ${JSON.stringify(value)}}`;
        expectProblem(res, 400, what);
        const paths = (res.body.errors ?? []).map((e: { path: string }) => e.path);
        expect(paths.some((p: string) => p === field || p.startsWith(`${field}.`)), `${what}: errors ${JSON.stringify(res.body.errors)}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('a query parameter of the wrong type is a 400', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    let checked = 0;
    for (const op of ops.filter((o) => o.method === 'GET')) {
      for (const p of op.params.filter((x) => x.in === 'query')) {
        const t = p.schema?.type;
        if (!p.schema?.enum && t !== 'integer' && t !== 'number') continue;
        const res = await send(op, `${fill(op.path, false)}?${p.name}=not-valid-${t}`, undefined);
        expectProblem(res, 400, `${op.service} GET ${op.path}?${p.name}=bad`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('the services are healthy after all that', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    expect(stack.alive()).toEqual({ orchestrator: true, scheduler: true, 'worker-manager': true });
    for (const s of SERVICE_NAMES) {
      const h = await call(stack.urls[s], 'GET', '/health');
      expect(h.status, s).toBe(200);
      expect(h.body).toMatchObject({ status: 'ok', checks: { postgres: 'ok', nats: 'ok' } });
    }
    // and still do real work
    const j = await call(stack.urls.orchestrator, 'POST', '/api/v1/jobs', { name: 'after-bad-inputs', command: 'echo ok' });
    expect(j.status).toBe(201);
  });
});
