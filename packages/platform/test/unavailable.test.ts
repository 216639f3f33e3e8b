// A request that fails because PostgreSQL or NATS is down, or PostgreSQL goes away mid-query, is a
// 503 problem+json that says so (the client may try again), never a 500. A service started while
// they do not answer waits for them instead of exiting.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootService, createLogger, createPool, createTestEnv, forwardTcp, Gauge, type Pool, type RunningService } from '../src/index.js';

const env = createTestEnv();
let svc: RunningService;
let unreachable: Pool;
let closedBus: JetStreamClient;
let dir: string | undefined;
/** What the service logged, one JSON object a line. */
const logged: Record<string, unknown>[] = [];
const requestFailures = (path: string) => logged.filter((l) => l.msg === 'request failed' && l.path === path);

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hodei-unavailable-'));
  await writeFile(join(dir, '001_init.sql'), 'SELECT 1;');
  const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
  closedBus = jetstream(nc);
  await nc.close();
  unreachable = createPool(`postgres://postgres@127.0.0.1:${await closedPort()}/nowhere`, 'orchestrator', createLogger('test', 'silent'));
  svc = await bootService(
    {
      title: 'Test service',
      description: 'database outages',
      schema: 'orchestrator',
      migrationsDir: dir,
      setup: ({ api, db, metrics }) => {
        new Gauge({
          name: 'hodei_test_rows',
          help: 'read from a database nothing listens on',
          registers: [metrics],
          async collect() {
            this.set((await unreachable.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n);
          },
        });
        new Gauge({ name: 'hodei_test_stalled', help: 'a read that never answers', registers: [metrics], collect: () => new Promise(() => {}) });
        api.route({ method: 'get', path: '/api/v1/down', tag: 't', summary: 'a database nothing listens on', responses: { 200: { description: 'ok' } } }, async (_i, _req, res) => {
          await unreachable.query('SELECT 1');
          res.json({});
        });
        api.route({ method: 'get', path: '/api/v1/bus', tag: 't', summary: 'a publish on a closed NATS connection', responses: { 200: { description: 'ok' } } }, async (_i, _req, res) => {
          await closedBus.publish('nowhere', 'x');
          res.json({});
        });
        api.route({ method: 'get', path: '/api/v1/bug', tag: 't', summary: 'an unexpected error', responses: { 200: { description: 'ok' } } }, async () => {
          throw new Error('a bug');
        });
        api.route({ method: 'get', path: '/api/v1/slow', tag: 't', summary: 'a query whose connection is terminated', responses: { 200: { description: 'ok' } } }, async (_i, _req, res) => {
          await db.query("SELECT pg_sleep(30) /* hodei-unavailable-test */");
          res.json({});
        });
        return {};
      },
    },
    env.config('orchestrator'),
    pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) }),
  );
});
afterAll(async () => {
  await unreachable?.end();
  await svc?.stop();
  await env.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function expect503(res: Response, detail: RegExp): Promise<void> {
  expect(res.status).toBe(503);
  expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
  const body = (await res.json()) as { status: number; detail: string };
  expect(body.status).toBe(503);
  expect(body.detail).toMatch(detail);
}

describe('database unavailable', () => {
  it('cannot connect: 503 naming what is unavailable', async () => {
    await expect503(await fetch(`${svc.url}/api/v1/down`), /unavailable \(ECONNREFUSED\); try again/);
  });

  it('is logged with its reason and no stack trace; an unexpected error (500) with its stack', async () => {
    await fetch(`${svc.url}/api/v1/down`);
    const down = requestFailures('/api/v1/down').at(-1);
    expect(down).toMatchObject({ level: 50, status: 503, detail: expect.stringMatching(/unavailable \(ECONNREFUSED\)/) });
    expect(down).not.toHaveProperty('err');
    expect((await fetch(`${svc.url}/api/v1/bug`)).status).toBe(500);
    expect(requestFailures('/api/v1/bug').at(-1)).toMatchObject({ err: { message: 'a bug', stack: expect.stringContaining('Error: a bug') } });
  });

  it('NATS connection closed: 503, the message bus is unavailable', async () => {
    await expect503(await fetch(`${svc.url}/api/v1/bus`), /^the message bus is unavailable \(.+\); try again$/);
  });

  it('the connection is terminated mid-query: 503, the database is unavailable', async () => {
    const pending = fetch(`${svc.url}/api/v1/slow`);
    const admin = createPool(env.databaseUrl, 'public', createLogger('test', 'silent'));
    try {
      let killed = 0;
      for (let i = 0; i < 100 && !killed; i++) {
        const { rows } = await admin.query(
          "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%hodei-unavailable-test%' AND pid <> pg_backend_pid()) t",
        );
        killed = (rows[0] as { n: number }).n;
        if (!killed) await new Promise((r) => setTimeout(r, 50));
      }
      expect(killed).toBe(1);
      await expect503(await pending, /^the database is unavailable; try again$/);
    } finally {
      await admin.end();
    }
  });
});

describe('/metrics while a metric cannot be read', () => {
  it('answers the others at once, leaving out the ones read from a database that is down or does not answer', async () => {
    await fetch(`${svc.url}/health`);
    const started = Date.now();
    const res = await fetch(`${svc.url}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(Date.now() - started).toBeLessThan(6000);
    expect(text).toMatch(/^hodei_process_cpu_user_seconds_total\{service="orchestrator"\} \d/m);
    expect(text).toMatch(/^hodei_http_request_duration_seconds_count\{service="orchestrator",method="GET",route="\/health",status="\d+"\} [1-9]/m);
    expect(text).not.toMatch(/hodei_test_(rows|stalled)/);
    expect(logged.filter((l) => l.msg === 'metric left out of /metrics').map((l) => l.metric).sort()).toEqual(['hodei_test_rows', 'hodei_test_stalled']);
  });
});

describe('start-up while PostgreSQL and NATS do not answer', () => {
  it('waits for them, saying so and naming the variable, and starts once they answer', async () => {
    const own = createTestEnv();
    const [pgPort, natsPort] = [await closedPort(), await closedPort()];
    const pgUrl = new URL(own.databaseUrl);
    const natsUrl = new URL(process.env.NATS_URL ?? 'nats://127.0.0.1:4222');
    const databaseUrl = Object.assign(new URL(own.databaseUrl), { port: String(pgPort) }).toString();
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const proxies: Array<{ close: () => Promise<void> }> = [];
    let started: RunningService | undefined;
    try {
      const boot = bootService(
        { title: 'Test service', description: 'start-up', schema: 'orchestrator', migrationsDir: dir!, setup: () => ({}) },
        own.config('orchestrator', { databaseUrl, natsUrl: `nats://127.0.0.1:${natsPort}` }),
        log,
      ).then((s) => (started = s));
      const failed = boot.then(() => null, (err: unknown) => err);
      /** Waits (up to 10 s) for a line matching `re`, the start-up still waiting meanwhile. */
      const said = async (re: RegExp) => {
        for (let i = 0; i < 200 && !lines.some((l) => re.test(String(l.msg))); i++) await new Promise((r) => setTimeout(r, 50));
        expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(re));
        expect(await Promise.race([failed, 'waiting'])).toBe('waiting');
      };
      await said(/^PostgreSQL at postgres:.* does not answer \(ECONNREFUSED\); waiting for it \(check DATABASE_URL\)$/);
      await new Promise((r) => setTimeout(r, 600)); // a retry or two, said once
      proxies.push(await forwardTcp(pgPort, pgUrl));
      await said(/^NATS at nats:.* does not answer \(connection refused\); waiting for it \(check NATS_URL\)$/);
      proxies.push(await forwardTcp(natsPort, natsUrl));
      expect(await failed).toBeNull();
      expect((await fetch(`${started!.url}/health`)).status).toBe(200);
      expect(lines.filter((l) => l.level === 40 && / does not answer /.test(String(l.msg)))).toHaveLength(2);
      expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/^PostgreSQL at .* answers$/));
    } finally {
      await started?.stop();
      for (const p of proxies) await p.close();
      await own.cleanup();
    }
  });
});
