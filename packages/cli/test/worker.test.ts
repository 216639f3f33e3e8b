// `hodei worker` against a stand-in scheduler: it refuses the token `wrong`, and registers anyone else.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from '@hodei/platform';
import { buildCli, hodei, hodeiDone } from './helpers.js';

let env: TestEnv;
let scheduler: http.Server;
let schedulerUrl: string;

beforeAll(async () => {
  buildCli();
  env = createTestEnv();
  scheduler = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.headers.authorization === 'Bearer wrong') {
        res.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"title":"Unauthorized","status":401,"detail":"invalid token"}');
      } else res.writeHead(req.method === 'DELETE' ? 204 : 201, { 'content-type': 'application/json' }).end(req.method === 'DELETE' ? undefined : '{}');
    });
  });
  await new Promise<void>((r) => scheduler.listen(0, '127.0.0.1', r));
  schedulerUrl = `http://127.0.0.1:${(scheduler.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  scheduler?.close();
  await env?.cleanup();
});

describe('hodei worker', () => {
  it('exits 1 saying why when the scheduler refuses its registration (a wrong token), instead of running unregistered', async () => {
    const nats = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const r = await hodeiDone(['worker', '--nats', nats, '--prefix', env.natsPrefix, '--scheduler', schedulerUrl], {
      HODEI_API_TOKEN: 'wrong',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the scheduler refused the token (401: invalid token): HODEI_API_TOKEN (hodei worker --token) must be the services' HODEI_API_TOKEN");
  }, 20_000);

  it('serves the agent\'s /metrics on HODEI_WORKER_METRICS_PORT, as the README says of a standalone agent', async () => {
    const nats = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    const run = hodei(['worker', '--nats', nats, '--prefix', env.natsPrefix, '--scheduler', schedulerUrl, '--slots', '3'], {
      HODEI_WORKER_METRICS_PORT: '0',
      HODEI_WORKER_METRICS_HOST: '127.0.0.1',
    });
    try {
      const logged = await run.waitFor(/"metrics on \/metrics"/, 10_000);
      const { port } = JSON.parse(logged.text) as { port: number };
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(/^hodei_worker_capacity_slots\{service="worker"\} 3$/m);
      expect(text).toMatch(/^hodei_worker_executions_running\{service="worker"\} 0$/m);
    } finally {
      run.child.kill('SIGINT');
      await run.done;
    }
  }, 20_000);
});
