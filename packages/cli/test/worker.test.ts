// `hodei worker` against a scheduler that will not have it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from '@hodei/platform';
import { buildCli, hodeiDone } from './helpers.js';

let env: TestEnv;
let scheduler: http.Server;
let schedulerUrl: string;

beforeAll(async () => {
  buildCli();
  env = createTestEnv();
  scheduler = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(401, { 'content-type': 'application/problem+json' }).end('{"title":"Unauthorized","status":401,"detail":"invalid token"}'));
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
    expect(r.stderr).toMatch(/the scheduler refused the registration \(401\).*invalid token/);
  }, 20_000);
});
