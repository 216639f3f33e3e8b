import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootService, ConflictError, createTestEnv, responseProblems, sendCreated, sendList, SseConnection, type ObservedResponse, type OpenApiDocument, type RunningService } from '../src/index.js';

const env = createTestEnv();
const TOKEN = 's3cret-token';
let svc: RunningService;
let open: RunningService;
const ID = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';
/** Used by the conflict test only (svc and open share one database, and ID is taken). */
const CONFLICT_ID = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a13';

let migrations = '';

async function boot(overrides: Parameters<typeof env.config>[1]) {
  return bootService(
    {
      title: 'Test service',
      description: 'app factory test',
      schema: 'orchestrator',
      migrationsDir: migrations,
      setup: ({ api, db }) => {
        api.route(
          {
            method: 'post',
            path: '/api/v1/notes/:id',
            tag: 'notes',
            summary: 'create a note',
            params: z.object({ id: z.uuid() }),
            body: z.object({ n: z.number().int().min(0).max(10), kind: z.enum(['a', 'b']).optional() }).strict(),
            yaml: true,
            responses: { 201: { description: 'created' }, 409: { description: 'the note exists' } },
          },
          async ({ params, body }, _req, res) => {
            const { rowCount } = await db.query('INSERT INTO notes VALUES ($1, $2) ON CONFLICT DO NOTHING', [params.id, body.n]);
            if (!rowCount) throw new ConflictError(`note ${params.id} exists`);
            sendCreated(res, `/api/v1/notes/${params.id}`, { id: params.id, ...body });
          },
        );
        api.route(
          {
            method: 'get',
            path: '/api/v1/notes',
            tag: 'notes',
            summary: 'list notes',
            responses: { 200: { description: 'notes', schema: z.array(z.object({ id: z.uuid(), n: z.number() })) } },
          },
          async (_input, _req, res) => {
            const { rows } = await db.query<{ id: string; n: number }>('SELECT id, n FROM notes ORDER BY id');
            sendList(res, rows, rows.length);
          },
        );
        api.route(
          { method: 'get', path: '/api/v1/stuck', tag: 'notes', summary: 'answers nothing until the client leaves', responses: { 200: { description: 'never' } } },
          async (_input, _req, res) => {
            await new Promise((resolve) => res.on('close', resolve));
          },
        );
        api.route(
          { method: 'get', path: '/api/v1/stream', tag: 'notes', summary: 'an event stream', responses: { 200: { description: 'events' } } },
          async (_input, req, res) => {
            new SseConnection(req, res).event('hello', {});
          },
        );
        return {};
      },
    },
    env.config('orchestrator', overrides),
  );
}

const post = (base: string, body: string, type = 'application/json', headers: Record<string, string> = {}) =>
  fetch(`${base}/api/v1/notes/${ID}`, { method: 'POST', headers: { 'content-type': type, ...headers }, body });

beforeAll(async () => {
  migrations = await mkdtemp(join(tmpdir(), 'hodei-app-'));
  await writeFile(join(migrations, '001_init.sql'), 'CREATE TABLE notes (id uuid PRIMARY KEY, n int NOT NULL);');
  svc = await boot({ apiToken: TOKEN });
  open = await boot({ apiToken: undefined });
});
afterAll(async () => {
  await svc?.stop();
  await open?.stop();
  await env.cleanup();
  if (migrations) await rm(migrations, { recursive: true, force: true });
});

describe('app factory', () => {
  it('answers /health with both checks', async () => {
    const res = await fetch(`${svc.url}/health`);
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ status: 'ok', service: 'orchestrator', checks: { postgres: 'ok', nats: 'ok' } });
    expect(typeof body.uptime_seconds).toBe('number');
  });

  it('requires the bearer token on /api/v1 only', async () => {
    const res = await post(svc.url, '{"n":1}');
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="hodei"');
    const wrong = await post(svc.url, '{"n":1}', 'application/json', { authorization: 'Bearer wrong' });
    expect([wrong.status, wrong.headers.get('www-authenticate')]).toEqual([401, 'Bearer realm="hodei", error="invalid_token"']);
    const ok = await post(svc.url, '{"n":1}', 'application/json', { authorization: `Bearer ${TOKEN}` });
    expect(ok.status).toBe(201);
    expect(ok.headers.get('location')).toBe(`/api/v1/notes/${ID}`);
    // the note is there already: a 409 means the token was taken
    for (const authorization of [`bearer ${TOKEN}`, `BEARER ${TOKEN}`, `Bearer  ${TOKEN}`])
      expect((await post(svc.url, '{"n":1}', 'application/json', { authorization })).status, authorization).toBe(409);
    for (const authorization of [`Basic ${TOKEN}`, `Bearer${TOKEN}`, `Bearer ${TOKEN}x`, `${TOKEN}`])
      expect((await post(svc.url, '{"n":1}', 'application/json', { authorization })).status, authorization).toBe(401);
    expect((await fetch(`${svc.url}/metrics`)).status).toBe(200);
    expect((await fetch(`${svc.url}/openapi.json`)).status).toBe(200);
  });

  it('binds to 127.0.0.1 without a token', () => {
    expect(open.ctx.config.host).toBe('127.0.0.1');
    expect(open.server.address()).toMatchObject({ address: '127.0.0.1' });
  });

  it('without a token answers only requests to a name of this machine, not a page whose name was re-pointed (DNS rebinding)', async () => {
    const get = (url: string, host: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(`${url}/api/v1/notes/${ID}`, { headers: { host } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const rebound = await get(open.url, `evil.example:${open.port}`);
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body)).toMatchObject({ status: 403, detail: `without HODEI_API_TOKEN the API answers only requests to 127.0.0.1 or localhost, not to Host "evil.example:${open.port}"` });
    for (const host of [`127.0.0.1:${open.port}`, `localhost:${open.port}`, 'localhost', `[::1]:${open.port}`, `app.localhost:${open.port}`])
      expect((await get(open.url, host)).status, host).not.toBe(403);
    // a token guards the API wherever it is called from
    expect((await get(svc.url, `evil.example:${svc.port}`)).status).toBe(401);
    const health = await new Promise<number>((resolve) => request(`${open.url}/health`, { headers: { host: 'evil.example' } }, (res) => resolve(res.statusCode ?? 0)).end());
    expect(health).toBe(200);
  });

  it('documents the 403 an API route answers a request to another Host', async () => {
    const doc = (await (await fetch(`${open.url}/openapi.json`)).json()) as OpenApiDocument;
    const observed = await new Promise<ObservedResponse>((resolve, reject) => {
      const req = request(`${open.url}/api/v1/notes`, { headers: { host: 'evil.example' } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ method: 'GET', path: '/api/v1/notes', status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? null, text }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(observed.status).toBe(403);
    expect(responseProblems(doc, observed)).toEqual([]);
  });

  it('maps client mistakes to 4xx problem+json naming the field', async () => {
    const cases: Array<[Promise<Response>, number, string?]> = [
      [post(open.url, '{"n":'), 400, 'body'],
      [post(open.url, '{"n":"x"}'), 400, 'n'],
      [post(open.url, '{"n":-1}'), 400, 'n'],
      [post(open.url, '{"n":1e300}'), 400, 'n'],
      [post(open.url, '{"n":1,"kind":"zzz"}'), 400, 'kind'],
      [post(open.url, '{"n":1,"extra":true}'), 400, 'extra'],
      [post(open.url, 'n: [1', 'application/yaml'), 400, 'body'],
      // PostgreSQL stores no NUL character: refused up front, by name, before it could become a 500
      [post(open.url, '{"n":1,"kind":"a\\u0000"}'), 400, 'kind'],
      [post(open.url, 'n: 1\nkind: "b\\0"', 'application/yaml'), 400, 'kind'],
      // YAML aliases: one inside itself, and a "billion laughs" that multiplies them
      [post(open.url, 'n: &a [*a]', 'application/yaml'), 400, 'body'],
      [post(open.url, ['a: &a [x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${String.fromCharCode(97 + i)}`).join(', ')}]`)].join('\n'), 'application/yaml'), 400, 'body'],
      // nested deeper than any call stack
      [post(open.url, '['.repeat(100_000) + ']'.repeat(100_000)), 400, 'body'],
      [post(open.url, `{"n":1,"kind":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`), 400, 'kind'],
      [post(open.url, 'hello', 'text/plain'), 415],
      // a Content-Encoding the body does not have: zlib's 'incorrect header check' named nothing
      [post(open.url, '{"n":1}', 'application/json', { 'content-encoding': 'gzip' }), 400, 'body'],
      // brotli's 'Decompression failed' came as a bare 400 with no errors
      [post(open.url, '{"n":1}', 'application/json', { 'content-encoding': 'br' }), 400, 'body'],
      [post(open.url, JSON.stringify({ n: 1, pad: 'x'.repeat(4 * 1024 * 1024) })), 413, 'body'],
      [fetch(`${open.url}/api/v1/notes/not-a-uuid`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' }), 400, 'id'],
      // not percent-encoded UTF-8: Express's own 400 named only the value
      [fetch(`${open.url}/api/v1/notes/%FF`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' }), 400, 'id'],
      [fetch(`${open.url}/api/v1/notes/%E2%82/`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' }), 400, 'id'],
      [fetch(`${open.url}/api/v1/nothing`), 404],
    ];
    for (const [pending, status, field] of cases) {
      const res = await pending;
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
      const problem = await res.json();
      expect(problem.status).toBe(status);
      expect(JSON.stringify(problem)).not.toMatch(/at .*\.ts:\d+|SELECT|INSERT/);
      if (field) expect(problem.errors.map((e: { path: string }) => e.path)).toContain(field);
    }
    expect((await fetch(`${open.url}/health`)).status).toBe(200);
  });

  it('names the request in `instance` by its path, a long query cut to its start and length', async () => {
    const long = `n=${'x'.repeat(3000)}`;
    const res = await fetch(`${open.url}/api/v1/notes/not-a-uuid?${long}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    expect((await res.json()).instance).toBe(`/api/v1/notes/not-a-uuid?${long.slice(0, 64)}…(3002 characters)`);
    const short = await fetch(`${open.url}/api/v1/notes/not-a-uuid?a=1`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"n":1}' });
    expect((await short.json()).instance).toBe('/api/v1/notes/not-a-uuid?a=1');
  });

  it('a body over the limit is a 413 that says which limit, and where to raise it', async () => {
    const res = await post(open.url, JSON.stringify({ n: 1, pad: 'x'.repeat(4 * 1024 * 1024) }));
    expect([res.status, (await res.json()).detail]).toEqual([413, 'the request body is larger than 4mb (HODEI_BODY_LIMIT)']);
  });

  it('answers a JSON body that is not an object (null, a number, a string) with a 400 saying so', async () => {
    for (const body of ['null', ' 5', '"x"', 'true']) {
      const res = await post(open.url, body);
      const problem = await res.json();
      expect([res.status, problem.detail, problem.errors], body).toEqual([400, 'the request body must be a JSON object', [{ path: 'body', message: 'must be a JSON object' }]]);
    }
    expect((await (await post(open.url, 'nul')).json()).detail).toMatch(/^malformed JSON body: /);
  });

  it('answers a method a path does not take with 405 and Allow, an unknown path with 404', async () => {
    const cases: Array<[string, string, string]> = [
      ['PUT', `/api/v1/notes/${ID}`, 'POST'],
      ['DELETE', '/api/v1/notes', 'GET, HEAD'],
      ['POST', '/health', 'GET, HEAD'],
      ['DELETE', '/metrics', 'GET, HEAD'],
    ];
    for (const [method, path, allow] of cases) {
      const res = await fetch(`${open.url}${path}`, { method });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
      expect(await res.json()).toMatchObject({ status: 405, detail: `${method} is not allowed on ${path}; allowed: ${allow}` });
    }
    const options = await fetch(`${open.url}/health`, { method: 'OPTIONS' });
    expect([options.status, options.headers.get('allow')]).toEqual([200, 'GET, HEAD']);
    expect((await fetch(`${open.url}/api/v1/notes/${ID}/more`, { method: 'PUT' })).status).toBe(404);
    // the token is asked for first, as on every /api/v1 request
    expect((await fetch(`${svc.url}/api/v1/notes`, { method: 'DELETE' })).status).toBe(401);
  });

  it('gives YAML syntax errors with line and column, and accepts valid YAML', async () => {
    const bad = await post(open.url, 'n: 1\nkind: [a\n', 'application/yaml');
    expect(bad.status).toBe(400);
    expect((await bad.json()).detail).toMatch(/line \d+, column \d+/);
    // the yaml library's own advice ('please use YAML.parseAllDocuments()') is no use to a client
    const two = await post(open.url, 'n: 1\n---\nn: 2\n', 'application/yaml');
    expect([two.status, (await two.json()).errors]).toEqual([400, [{ path: 'body', message: 'line 2, column 1: a second YAML document starts here (---): send one document' }]]);
    const good = await fetch(`${open.url}/api/v1/notes/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a12`, {
      method: 'POST',
      headers: { 'content-type': 'application/yaml' },
      body: 'n: 2\nkind: b\n',
    });
    expect(good.status).toBe(201);
    expect(await good.json()).toMatchObject({ n: 2, kind: 'b' });
  });

  it('maps a state conflict to 409', async () => {
    const note = (n: number) =>
      fetch(`${open.url}/api/v1/notes/${CONFLICT_ID}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) });
    expect((await note(3)).status).toBe(201);
    const again = await note(4);
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect((await again.json()).detail).toBe(`note ${CONFLICT_ID} exists`);
  });

  it('documents routes in OpenAPI and serves Swagger UI', async () => {
    const doc = await (await fetch(`${open.url}/openapi.json`)).json();
    expect(doc.openapi).toMatch(/^3\./);
    const create = doc.paths['/api/v1/notes/{id}'].post;
    expect(create.requestBody.content).toHaveProperty('application/yaml');
    // the headers sendCreated and sendList set, and every error as the problem+json it is sent as
    expect(create.responses['201'].headers).toHaveProperty('Location');
    expect(doc.paths['/api/v1/notes'].get.responses['200'].headers).toHaveProperty('X-Total-Count');
    expect((await fetch(`${open.url}/api/v1/notes`)).headers.get('x-total-count')).toMatch(/^\d+$/);
    for (const status of ['400', '401', '409', '413', '415', '503']) {
      expect(create.responses[status]?.content?.['application/problem+json']?.schema, status).toEqual({ $ref: '#/components/schemas/Problem' });
    }
    expect(doc.paths['/api/v1/notes'].get.responses).not.toHaveProperty('415');
    expect(doc.paths['/health'].get.responses['503'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/Health' });
    expect(doc.paths['/metrics'].get.responses['200'].content).toHaveProperty('text/plain');
    const ui = await fetch(`${open.url}/swagger-ui/`);
    expect(ui.status).toBe(200);
    expect(await ui.text()).toContain('swagger-ui');
    for (const asset of ['/swagger-ui/swagger-ui.css', '/swagger-ui/swagger-ui-init.js']) expect((await fetch(`${open.url}${asset}`)).status, asset).toBe(200);
    // swagger-ui-dist's index.html showed the petstore example
    const index = await fetch(`${open.url}/swagger-ui/index.html`);
    expect([index.status, index.url, await index.text()]).toEqual([200, `${open.url}/swagger-ui/`, expect.stringContaining('swagger-ui-init.js')]);
    // the page answered any method and any path under it with its HTML, 200
    for (const [method, path, status] of [['POST', '/swagger-ui/', 405], ['DELETE', '/swagger-ui/swagger-ui.css', 405], ['GET', '/swagger-ui/nope', 404]] as const) {
      const res = await fetch(`${open.url}${path}`, { method });
      expect([method, path, res.status, res.headers.get('content-type')]).toEqual([method, path, status, expect.stringContaining('application/problem+json')]);
      if (status === 405) expect(res.headers.get('allow')).toBe('GET, HEAD');
    }
  });

  it('counts requests by route in /metrics', async () => {
    const text = await (await fetch(`${open.url}/metrics`)).text();
    expect(text).toMatch(/hodei_http_request_duration_seconds_count\{[^}]*route="\/api\/v1\/notes\/:id"[^}]*status="201"/);
  });

  it('counts the requests a client gave up on: status 499 before the answer started, an event stream with its 200', async () => {
    const count = async (route: string, status: string) => {
      const text = await (await fetch(`${open.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('hodei_http_request_duration_seconds_count{') && l.includes(`route="${route}"`) && l.includes(`status="${status}"`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const [stuck, stream] = [await count('/api/v1/stuck', '499'), await count('/api/v1/stream', '200')];
    await fetch(`${open.url}/api/v1/stuck`, { signal: AbortSignal.timeout(200) }).catch(() => undefined);
    const events = await fetch(`${open.url}/api/v1/stream`);
    const reader = events.body!.getReader();
    await reader.read();
    await reader.cancel();
    const deadline = Date.now() + 5000;
    while ((await count('/api/v1/stuck', '499')) === stuck || (await count('/api/v1/stream', '200')) === stream) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect([await count('/api/v1/stuck', '499'), await count('/api/v1/stream', '200')]).toEqual([stuck + 1, stream + 1]);
  });

  it('counts a request refused before its route (no token, a body that is no JSON) under that route, a path of no route as unmatched', async () => {
    const counted = async (base: string, labels: string) => {
      const line = (await (await fetch(`${base}/metrics`)).text()).split('\n').find((l) => l.startsWith(`hodei_http_request_duration_seconds_count{service="orchestrator",${labels}}`));
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const noToken = 'method="POST",route="/api/v1/notes/:id",status="401"';
    const notJson = 'method="POST",route="/api/v1/notes/:id",status="400"';
    const nowhere = 'method="GET",route="unmatched",status="404"';
    const before = [await counted(svc.url, noToken), await counted(open.url, notJson), await counted(open.url, nowhere)];
    expect((await post(svc.url, '{"n":1}')).status).toBe(401);
    expect((await post(open.url, '{"n":')).status).toBe(400);
    expect((await fetch(`${open.url}/api/v1/nothing/${ID}`)).status).toBe(404);
    await new Promise((r) => setTimeout(r, 100));
    expect([await counted(svc.url, noToken), await counted(open.url, notJson), await counted(open.url, nowhere)]).toEqual(before.map((n) => n + 1));
  });

  it('allows localhost browser origins by default', async () => {
    const res = await fetch(`${open.url}/health`, { headers: { origin: 'http://localhost:3000' } });
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
    const other = await fetch(`${open.url}/health`, { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('fails to start on a port already in use with EADDRINUSE, not a TypeError', async () => {
    await expect(boot({ apiToken: undefined, port: open.port })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect((await fetch(`${open.url}/health`)).status).toBe(200);
  });

  it('answers 503 naming the failing dependency', async () => {
    await open.ctx.bus.nc.close();
    const res = await fetch(`${open.url}/health`);
    expect(res.status).toBe(503);
    const body = await res.json();
    expect(body.status).toBe('degraded');
    expect(body.checks.postgres).toBe('ok');
    expect(body.checks.nats).toMatch(/^error: /);
  });
});
