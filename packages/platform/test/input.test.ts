// Request bodies on the services' own routes, with the default configuration: a script is taken
// up to what NATS carries in one message and refused past it; text no UTF-8 can hold, and a worker offering no memory, are a 400
// naming the field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../../services/orchestrator/src/service.js';
import { startScheduler } from '../../../services/scheduler/src/service.js';
import { startWorkerManager } from '../../../services/worker-manager/src/service.js';
import { connect } from '@nats-io/transport-node';
import { maxHeaderSize } from 'node:http';
import { createConnection } from 'node:net';
import { createTestEnv, MESSAGE_HEADROOM, type RunningService } from '../src/index.js';

const env = createTestEnv();
let orchestrator: RunningService;
let scheduler: RunningService;
let workerManager: RunningService;

async function send(base: string, method: string, path: string, body: unknown) {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  workerManager = await startWorkerManager(env.config('worker-manager'));
  scheduler = await startScheduler(env.config('scheduler'));
  orchestrator = await startOrchestrator(env.config('orchestrator', { urls: { ...env.config('orchestrator').urls, 'worker-manager': workerManager.url } }));
});
afterAll(async () => {
  await orchestrator?.stop();
  await scheduler?.stop();
  await workerManager?.stop();
  await env.cleanup();
});

describe('request bodies', () => {
  it('takes a script as large as NATS carries in one message, and refuses a larger one with a 413 naming script, storing nothing', async () => {
    const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
    const maxPayload = nc.info!.max_payload;
    await nc.close();
    const room = maxPayload - MESSAGE_HEADROOM;
    // quotes and newlines take 2 bytes each once escaped: the JSON of the definition is what counts
    const fits = '#!/bin/sh\n' + 'echo "x"\n'.repeat(Math.floor((room - 2000) / 12));
    expect(Buffer.byteLength(JSON.stringify(fits))).toBeGreaterThan(room - 2020);
    const ok = await send(orchestrator.url, 'POST', '/api/v1/jobs', { name: 'big', script: fits, env: { A: 'b' } });
    expect(ok.status, ok.body.detail).toBe(201);
    const back = await fetch(`${orchestrator.url}/api/v1/jobs/${ok.body.id}`).then((res) => res.json());
    expect(back.script).toBe(fits);
    const executed = await send(workerManager.url, 'POST', '/api/v1/execute', { script: fits });
    expect(executed.status, executed.body.detail).toBe(202);

    for (const script of [fits + 'echo "x"\n'.repeat(250), '€'.repeat(Math.ceil(room / 3) + 1)]) {
      const created = await send(orchestrator.url, 'POST', '/api/v1/jobs', { name: 'too-big', script });
      expect(created.status).toBe(413);
      expect(created.body.detail).toMatch(new RegExp(`most of it in script; NATS carries at most ${room} \\(its max_payload ${maxPayload}`));
      const inline = await send(workerManager.url, 'POST', '/api/v1/execute', { script });
      expect([inline.status, inline.body.detail]).toEqual([413, expect.stringMatching(/most of it in script; NATS carries at most/)]);
    }
    const big = fits + 'echo "x"\n'.repeat(250);
    const inPipeline = await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 'p', jobs: [{ name: 'small', command: 'true' }, { name: 'huge', script: big }] });
    expect([inPipeline.status, inPipeline.body.detail]).toEqual([413, expect.stringMatching(/^the definition of job huge is \d+ bytes as JSON, most of it in script;/)]);
    expect(await fetch(`${orchestrator.url}/api/v1/pipelines`).then((res) => res.json())).toEqual([]);
    const patched = await send(orchestrator.url, 'PATCH', `/api/v1/jobs/${ok.body.id}`, { env: { A: 'x'.repeat(4000) } });
    expect([patched.status, patched.body.detail]).toEqual([413, expect.stringContaining('most of it in script')]);
    const stored = await fetch(`${orchestrator.url}/api/v1/jobs?limit=100`).then((res) => res.json());
    expect(stored.map((j: { name: string; env: object }) => [j.name, j.env])).toEqual([['big', { A: 'b' }]]);
    const executions = await fetch(`${workerManager.url}/api/v1/executions?limit=100`).then((res) => res.json());
    expect(executions.map((e: { id: string }) => e.id)).toEqual([executed.body.id]);

    const tooLong = await send(orchestrator.url, 'POST', '/api/v1/jobs', { script: 'x'.repeat(1024 * 1024 + 1) });
    expect([tooLong.status, tooLong.body.errors?.[0]?.path]).toEqual([400, 'script']);
  });

  it('refuses a lone UTF-16 surrogate in any string, naming the field, instead of a bare 400 or a U+FFFD stored', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      [orchestrator.url, '/api/v1/jobs', '{"command":"true","env":{"A":"x\\ud800"}}', 'env.A'],
      [orchestrator.url, '/api/v1/jobs', '{"command":"true","name":"a\\udc00b"}', 'name'],
      [orchestrator.url, '/api/v1/jobs', '{"command":"true","labels":{"k\\ud800":"v"}}', 'labels.k\ud800'],
      [orchestrator.url, '/api/v1/pipelines', '{"name":"p","tags":["ok","\\ud83d"]}', 'tags.1'],
      [workerManager.url, '/api/v1/execute', '{"command":"echo \\udfff"}', 'command'],
    ];
    for (const [base, path, body, field] of cases) {
      const r = await send(base, 'POST', path, body);
      expect([r.status, r.body.errors], `${path} ${field}`).toEqual([400, [{ path: field, message: 'must not contain a lone UTF-16 surrogate (\\ud800-\\udfff)' }]]);
    }
    // a pair (an emoji) is one character, and kept
    const ok = await send(orchestrator.url, 'POST', '/api/v1/jobs', '{"command":"true","name":"\\ud83d\\ude00","env":{"A":"\\ud83d\\ude00"}}');
    expect([ok.status, ok.body.name, ok.body.env]).toEqual([201, '😀', { A: '😀' }]);
  });

  it('names a huge key by its start and length, and a deep path by its first keys, not whole, in the detail and each error', async () => {
    const key = 'K'.repeat(5000);
    const deep = `{"command":"true","labels":${'{"a":'.repeat(20_000)}"x\\u0000"${'}'.repeat(20_000)}}`;
    const shown = `${'K'.repeat(64)}…(5000 characters)`;
    const cases: Array<[string, string, unknown, string, string]> = [
      [workerManager.url, '/api/v1/execute', { command: 'true', env: { [key]: 'v' } }, `env.${shown}`, 'invalid name: is longer than 255 characters'],
      [orchestrator.url, '/api/v1/jobs', { command: 'true', env: { [key]: 'v' } }, `env.${shown}`, 'invalid name: is longer than 255 characters'],
      [orchestrator.url, '/api/v1/jobs', { command: 'true', [key]: 1 }, shown, `unknown field "${shown}"`],
      [scheduler.url, '/api/v1/workers', { type: 'shell', labels: { [`${key}\u0000`]: 'v' } }, `labels.${'K'.repeat(64)}…(5001 characters)`, 'must not contain a NUL character (\\u0000)'],
      [workerManager.url, '/api/v1/execute', deep, `labels${'.a'.repeat(15)}…(20001 keys deep)`, 'must not contain a NUL character (\\u0000)'],
    ];
    for (const [base, path, body, field, message] of cases) {
      const r = await send(base, 'POST', path, body);
      expect([r.status, r.body.detail, r.body.errors], `${path} ${field}`).toEqual([400, `invalid body: ${field}`, [{ path: field, message }]]);
      expect(JSON.stringify(r.body).length, path).toBeLessThan(1000);
    }
  });

  it('refuses a body that is not UTF-8, naming it, instead of storing U+FFFD in its place', async () => {
    const bytes = (text: string) => Buffer.concat(text.split('\xff').flatMap((part, i) => (i ? [Buffer.from([0xff]), Buffer.from(part)] : [Buffer.from(part)])));
    const post = async (path: string, body: Buffer, type = 'application/json') => {
      const res = await fetch(`${orchestrator.url}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
      return { status: res.status, body: await res.json() };
    };
    const cases: Array<[string, Buffer, string?]> = [
      ['/api/v1/jobs', bytes('{"name":"latin\xff","command":"true"}')],
      ['/api/v1/pipelines', bytes('name: p\xff\njobs:\n  - {name: a, command: "true"}\n'), 'application/yaml'],
    ];
    for (const [path, body, type] of cases) {
      const r = await post(path, body, type);
      expect([r.status, r.body.errors], path).toEqual([400, [{ path: 'body', message: 'is not valid UTF-8' }]]);
    }
    const jobs = await fetch(`${orchestrator.url}/api/v1/jobs?name=latin%EF%BF%BD`).then((res) => res.json());
    expect(jobs).toEqual([]);
    // the same text in UTF-8 is taken
    const ok = await post('/api/v1/jobs', Buffer.from('{"name":"latin\u00ff","command":"true"}'));
    expect([ok.status, ok.body.name]).toEqual([201, 'latin\u00ff']);
  });

  it('a required field left out is named as such, not "expected string, received undefined" (JSON has no undefined)', async () => {
    for (const [base, path, body, field] of [
      [orchestrator.url, '/api/v1/pipelines', {}, 'name'],
      [orchestrator.url, '/api/v1/pipelines', { name: 'p', jobs: [{ command: 'true' }] }, 'jobs.0.name'],
      [orchestrator.url, '/api/v1/cleanup', { dry_run: true }, 'older_than_days'],
      [workerManager.url, '/api/v1/executions/cleanup', {}, 'job_ids'],
    ] as const) {
      const r = await send(base, 'POST', path, body);
      expect([path, r.status, r.body.errors]).toEqual([path, 400, [{ path: field, message: 'is required' }]]);
    }
    const yaml = await fetch(`${orchestrator.url}/api/v1/pipelines`, { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: 'description: no name\n' });
    expect((await yaml.json()).errors).toEqual([{ path: 'name', message: 'is required' }]);
    // a value of the wrong type still says what it is
    const wrong = await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 5 });
    expect(wrong.body.errors).toEqual([{ path: 'name', message: 'Invalid input: expected string, received number' }]);
  });

  it('a number past 2^53 is refused once, by the bound of its field, not also by "<=9007199254740991"', async () => {
    for (const [base, path, body, field, message] of [
      [orchestrator.url, '/api/v1/jobs', { priority: 1e20 }, 'priority', 'Too big: expected number to be <=15'],
      [orchestrator.url, '/api/v1/jobs', { timeout_seconds: 1e20 }, 'timeout_seconds', 'Too big: expected number to be <=604800'],
      [orchestrator.url, '/api/v1/jobs', { max_retries: -1e20 }, 'max_retries', 'Too small: expected number to be >=0'],
      [workerManager.url, '/api/v1/execute', { command: 'true', resources: { memory_bytes: 1e300 } }, 'resources.memory_bytes', 'Too big: expected number to be <=1125899906842624'],
      [scheduler.url, '/api/v1/workers', { capacity: { slots: 2 ** 53 + 2 } }, 'capacity.slots', 'Too big: expected number to be <=1024'],
    ] as const) {
      const r = await send(base, 'POST', path, body);
      expect([path, r.status, r.body.errors]).toEqual([path, 400, [{ path: field, message }]]);
    }
  });

  it('refuses __proto__ as an env or label name, naming it, instead of accepting the body and dropping it', async () => {
    const body = (fields: Record<string, unknown>) => `{${Object.entries(fields).map(([k, v]) => `"${k}":${typeof v === 'string' ? v : JSON.stringify(v)}`).join(',')}}`;
    const proto = '{"__proto__":"x","A":"1"}';
    for (const [base, path, text, field] of [
      [orchestrator.url, '/api/v1/jobs', body({ command: '"true"', env: proto }), 'env.__proto__'],
      [orchestrator.url, '/api/v1/jobs', body({ command: '"true"', labels: proto }), 'labels.__proto__'],
      [orchestrator.url, '/api/v1/pipelines', body({ name: '"p"', jobs: `[{"name":"a","command":"true","env":${proto}}]` }), 'jobs.0.env.__proto__'],
      [orchestrator.url, '/api/v1/pipelines/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11/runs', body({ env: proto }), 'env.__proto__'],
      [workerManager.url, '/api/v1/execute', body({ command: '"true"', env: proto }), 'env.__proto__'],
      [workerManager.url, '/api/v1/execute', body({ command: '"true"', labels: proto }), 'labels.__proto__'],
      [scheduler.url, '/api/v1/workers', body({ labels: proto }), 'labels.__proto__'],
    ] as const) {
      const r = await send(base, 'POST', path, text);
      expect([path, r.status, r.body.errors], text).toEqual([path, 400, [{ path: field, message: 'invalid name: __proto__ cannot be a name here (it would be dropped)' }]]);
    }
    // where the body takes no such field it stays an unknown one
    const top = await send(orchestrator.url, 'POST', '/api/v1/jobs', '{"__proto__":{"command":"x"}}');
    expect([top.status, top.body.errors]).toEqual([400, [{ path: '__proto__', message: 'unknown field "__proto__"' }]]);
  });

  it('refuses YAML nested deeper than 64 levels with a 400 saying so, and the service lives on (a 20 KB body of [ killed it)', async () => {
    const post = async (body: string, type: string, path = '/api/v1/jobs') => {
      const res = await fetch(`${orchestrator.url}${path}`, { method: 'POST', headers: { 'content-type': type }, body });
      return { status: res.status, body: await res.json() };
    };
    const nested = (n: number) => `name: x\nlabels: ${'['.repeat(n)}${']'.repeat(n)}\n`;
    // the requests that made a real orchestrator abort (V8: 'RegExpCompiler Allocation failed - process out of memory')
    for (const n of [1000, 10_000]) {
      await post(`{"name":${'['.repeat(n)}${']'.repeat(n)}}`, 'application/json');
      await post(`{"env":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`, 'application/json');
      for (const yaml of [`name: ${'['.repeat(n)}${']'.repeat(n)}`, `name:\n${Array.from({ length: Math.min(n, 2000) }, (_, i) => `${' '.repeat(i)}- `).join('\n')}\n`]) {
        const r = await post(yaml, 'application/yaml');
        expect([r.status, r.body.errors]).toEqual([400, [{ path: 'body', message: 'nests collections deeper than 64 levels' }]]);
      }
    }
    for (const [yaml, path] of [
      [nested(65), '/api/v1/jobs'],
      [`name: p\njobs:\n${'  '.repeat(0)}- name: a\n    labels: ${'{a: '.repeat(70)}b${'}'.repeat(70)}\n`, '/api/v1/pipelines'],
      [`name: x\nargs:\n${Array.from({ length: 70 }, (_, i) => `${' '.repeat(2 * i + 2)}-`).join('\n')} a\n`, '/api/v1/jobs'],
    ] as const) {
      const r = await post(yaml, 'application/yaml', path);
      expect([path, r.status, r.body.detail, r.body.errors]).toEqual([path, 400, 'the YAML body nests collections deeper than 64 levels', [{ path: 'body', message: 'nests collections deeper than 64 levels' }]]);
    }
    // 64 levels are parsed (and refused by the schema, naming the field)
    const deepest = await post(nested(63), 'application/yaml');
    expect([deepest.status, deepest.body.errors[0].path]).toEqual([400, 'labels']);
    expect((await fetch(`${orchestrator.url}/health`)).status).toBe(200);
  });

  it('refuses a query parameter that is not percent-encoded UTF-8, naming it, instead of filtering on U+FFFD', async () => {
    const named = (await fetch(`${orchestrator.url}/api/v1/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x\ufffd', command: 'true' }),
    }).then((res) => res.json())) as { id: string };
    for (const [base, path, field] of [
      [orchestrator.url, '/api/v1/jobs?name=x%FF', 'name'],
      [orchestrator.url, '/api/v1/jobs?limit=5&tag=%ED%A0%80', 'tag'],
      [scheduler.url, '/api/v1/workers?status=%C3', 'status'],
      [workerManager.url, '/api/v1/executions/01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11/logs?grep=%FE', 'grep'],
      [orchestrator.url, '/api/v1/jobs?na%FFme=x', 'query'],
    ] as const) {
      const res = await fetch(`${base}${path}`);
      const body = await res.json();
      expect([path, res.status, res.headers.get('content-type'), body.errors], JSON.stringify(body)).toEqual([
        path, 400, expect.stringContaining('application/problem+json'), [{ path: field, message: 'is not valid percent-encoded UTF-8' }],
      ]);
    }
    // the same character encoded in UTF-8 is taken
    const found = (await fetch(`${orchestrator.url}/api/v1/jobs?name=x%EF%BF%BD`).then((res) => res.json())) as Array<{ id: string }>;
    expect(found.map((j) => j.id)).toEqual([named.id]);
  });

  it('answers what Node refuses before any route (a URL over the header limit, a malformed request) as problem+json, not a bare status', async () => {
    const long = await fetch(`${orchestrator.url}/api/v1/jobs?name=${'x'.repeat(maxHeaderSize)}`);
    expect(long.status).toBe(431);
    expect(long.headers.get('content-type')).toBe('application/problem+json');
    expect((await long.json()).detail).toBe(`the request line and headers are larger than ${maxHeaderSize} bytes: shorten the path, the query or a header`);
    const { port } = new URL(scheduler.url);
    const rawRequest = (request: string) =>
      new Promise<string>((resolve, reject) => {
        let out = '';
        const socket = createConnection(Number(port), '127.0.0.1', () => socket.write(request));
        socket.on('data', (d) => (out += d)).on('close', () => resolve(out)).on('error', reject);
      });
    const raw = await rawRequest('POST /api/v1/schedules HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n');
    const [head, body] = raw.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1.1 400 Bad Request\r\nContent-Type: application\/problem\+json\r\n/);
    expect(JSON.parse(body!)).toMatchObject({ status: 400, detail: expect.stringMatching(/^malformed HTTP request: .*Content-Length/i) });
    // an HTTP/1.1 request without Host: Node's own 400 had an empty body; a CONNECT got no answer at all
    const noHost = await rawRequest('GET /api/v1/schedules HTTP/1.1\r\nConnection: close\r\n\r\n');
    expect(noHost).toMatch(/^HTTP\/1.1 400 Bad Request\r\n[^]*Content-Type: application\/problem\+json/);
    expect(JSON.parse(noHost.split('\r\n\r\n')[1]!)).toMatchObject({ status: 400, errors: [{ path: 'Host', message: 'is required in an HTTP/1.1 request' }] });
    const connect = await rawRequest(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    expect(connect).toMatch(/^HTTP\/1.1 405 Method Not Allowed\r\nContent-Type: application\/problem\+json\r\n/);
    expect(JSON.parse(connect.split('\r\n\r\n')[1]!)).toMatchObject({ status: 405, detail: 'CONNECT is not allowed: this is no proxy' });
    expect((await fetch(`${orchestrator.url}/health`)).status).toBe(200);
    expect((await fetch(`${scheduler.url}/health`)).status).toBe(200);
  });

  it('refuses a worker that offers less than 1 MiB of memory, on worker-manager and in the scheduler\'s registry', async () => {
    for (const [base, capacity, field] of [
      [workerManager.url, { memory_bytes: 1 }, 'capacity.memory_bytes'],
      [workerManager.url, { memory_bytes: 1024 * 1024 - 1 }, 'capacity.memory_bytes'],
      [workerManager.url, { slots: 0 }, 'capacity.slots'],
      [workerManager.url, { cpu_cores: 0 }, 'capacity.cpu_cores'],
      [scheduler.url, { memory_bytes: 1 }, 'capacity.memory_bytes'],
      [scheduler.url, { slots: 0 }, 'capacity.slots'],
      [scheduler.url, { cpu_cores: 0 }, 'capacity.cpu_cores'],
    ] as const) {
      const r = await send(base, 'POST', '/api/v1/workers', { capacity });
      expect([r.status, r.body.errors.map((e: { path: string }) => e.path)], `${base} ${JSON.stringify(capacity)}`).toEqual([400, [field]]);
    }
    const memory = await send(scheduler.url, 'POST', '/api/v1/workers', { capacity: { memory_bytes: 1 } });
    expect(memory.body.errors[0].message).toBe('must be at least 1048576 (1 MiB)');
    const least = await send(scheduler.url, 'POST', '/api/v1/workers', { capacity: { memory_bytes: 1024 * 1024 } });
    expect([least.status, least.body.capacity.memory_bytes]).toEqual([201, 1024 * 1024]);
  });
});
