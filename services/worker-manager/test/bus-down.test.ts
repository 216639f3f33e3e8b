// POST /execute while worker-manager's connection to NATS is down: a 503 problem+json at once, with
// Retry-After, and nothing recorded (a publish would wait 5 s for its time-out, and NATS drops what
// the client held for it when it reconnects). Once the connection is back, executions are taken again.
// A cancel that must ask NATS (did a worker take the execution?) answers the same 503 at once.
import { createTestEnv, forwardTcp, freePort, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { call, executeOn, getExecutionOn, until } from './helpers.js';

let env: TestEnv;
let wm: RunningService;
let link: { close: () => Promise<void> };
let port: number;
let natsUrl: URL;

beforeAll(async () => {
  env = createTestEnv();
  const config = env.config('worker-manager');
  natsUrl = new URL(config.natsUrl);
  port = await freePort();
  link = await forwardTcp(port, natsUrl);
  wm = await startWorkerManager({ ...config, natsUrl: `nats://127.0.0.1:${port}` });
}, 60_000);

afterAll(async () => {
  await wm?.stop();
  await link?.close();
  await env?.cleanup();
}, 60_000);

it('answers an execute at once with a 503 naming the message bus and Retry-After, records nothing, and takes executions again once NATS is back', async () => {
  await link.close();
  await until(async () => !wm.ctx.bus.link.up, 5_000, "worker-manager's connection to NATS down");

  const started = performance.now();
  const res = await call(wm.url, 'POST', '/api/v1/execute', { command: 'echo never' });
  const tookMs = performance.now() - started;
  expect(res.status).toBe(503);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(((await res.json()) as { detail: string }).detail).toMatch(/^the message bus \(NATS\) is unavailable: .*nothing was done, try again$/);
  expect(tookMs).toBeLessThan(1000);
  expect(await (await call(wm.url, 'GET', '/api/v1/executions')).json()).toEqual([]);

  link = await forwardTcp(port, natsUrl);
  await until(async () => wm.ctx.bus.link.up, 10_000, "worker-manager's connection to NATS back");
  const again = await call(wm.url, 'POST', '/api/v1/execute', { command: 'echo now' });
  expect(again.status).toBe(202);
  expect(((await (await call(wm.url, 'GET', '/api/v1/executions')).json()) as unknown[]).length).toBe(1);
}, 30_000);

it('answers a cancel that must ask NATS at once with a 503 naming the message bus, the execution left as it was, and cancels it once NATS is back', async () => {
  const queued = await executeOn(wm.url, { command: 'echo never-placed' });
  await link.close();
  await until(async () => !wm.ctx.bus.link.up, 5_000, "worker-manager's connection to NATS down");

  const started = performance.now();
  const res = await call(wm.url, 'POST', `/api/v1/executions/${queued.id}/cancel`);
  const tookMs = performance.now() - started;
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(((await res.json()) as { detail: string }).detail).toMatch(/^whether a worker took the execution could not be checked \(the message bus \(NATS\) is unavailable: /);
  expect(tookMs).toBeLessThan(1000);
  expect(await getExecutionOn(wm.url, queued.id)).toMatchObject({ status: 'queued' });

  link = await forwardTcp(port, natsUrl);
  await until(async () => wm.ctx.bus.link.up, 10_000, "worker-manager's connection to NATS back");
  const again = await call(wm.url, 'POST', `/api/v1/executions/${queued.id}/cancel`);
  expect(again.status).toBe(202);
  expect(await getExecutionOn(wm.url, queued.id)).toMatchObject({ status: 'cancelled' });
}, 30_000);
