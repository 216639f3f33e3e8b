// Many clients reading a long log history at once (a dashboard left open in many tabs, a team
// following one big job): their page reads must leave the pool to the API, /health and the
// ingest. They took every connection of it, and /health, waiting over 2 s for one, answered 503.
import { get } from 'node:http';
import { createTestEnv, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { finishedWithStoredLines } from './helpers.js';

const N = 100_000;
const CLIENTS = 200;
let env: TestEnv;
let svc: RunningService;
let id: string;

beforeAll(async () => {
  env = createTestEnv();
  svc = await startWorkerManager(env.config('worker-manager'));
  id = await finishedWithStoredLines(svc, N, (n) => `line ${n} ${'x'.repeat(80)}`);
}, 120_000);

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
});

it(`/health and the API answer while ${CLIENTS} clients read a ${N}-line history`, async () => {
  let reading = 0;
  const clients = Array.from({ length: CLIENTS }, () => {
    const req = get(`${svc.url}/api/v1/executions/${id}/logs/stream`, { agent: false }, (res) => {
      reading++;
      res.resume();
    });
    req.on('error', () => undefined);
    return req;
  });
  try {
    while (reading < CLIENTS) await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 3; i++) {
      const start = Date.now();
      const health = await fetch(`${svc.url}/health`);
      expect(health.status).toBe(200);
      const list = await fetch(`${svc.url}/api/v1/executions?limit=1`);
      expect(list.status).toBe(200);
      expect(list.headers.get('x-total-count')).toBe('1');
      // a few hundred ms here with the reads bounded, 5 s and more without
      expect(Date.now() - start).toBeLessThan(2500);
    }
  } finally {
    for (const c of clients) c.destroy();
  }
}, 60_000);
