// Restarts: log batches published while worker-manager is down are stored when it comes back
// (durable consumer, ack after insert); stop() stops the workers it started; records of workers
// whose process is gone become `exited` at start-up.
import { hostname } from 'node:os';
import { connectBus, createLogger, createTestEnv, type Config, type RunningService, type TestEnv, pidGone } from '@hodei/platform';
import type { LogLine } from '@hodei/types';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { lines, publishLines, publishStatus, until } from './helpers.js';
import { startSchedulerAndManager } from './manager-stack.js';

let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let wmConfig: Config;

beforeAll(async () => {
  env = createTestEnv();
  ({ sched, wm, wmConfig } = await startSchedulerAndManager(env));
}, 120_000);

afterAll(async () => {
  await wm?.stop();
  await sched?.stop();
  await env?.cleanup();
}, 60_000);


it('lines and statuses published while worker-manager is down are there after it restarts', async () => {
  const res = await fetch(`${wm.url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'x' }) });
  const id = ((await res.json()) as { id: string }).id;
  await publishLines(wm.ctx.bus, id, lines(1, 10));
  await until(async () => ((await (await fetch(`${wm.url}/api/v1/executions/${id}/logs`)).json()) as { lines: LogLine[] }).lines.length === 10);
  await wm.stop();

  // what a worker publishes meanwhile (through a connection of its own)
  const other = await connectBus(wmConfig.natsUrl, wmConfig.natsPrefix, 'test-worker', createLogger('test', 'silent'));
  await publishLines(other, id, lines(11, 500));
  await publishStatus(other, { execution_id: id, status: 'completed', exit_code: 0, last_seq: 500, duration_ms: 10 });
  await other.nc.close();

  wm = await startWorkerManager(wmConfig);
  const stored = await until(async () => {
    const r = (await (await fetch(`${wm.url}/api/v1/executions/${id}/logs?limit=1000`)).json()) as { lines: LogLine[] };
    return r.lines.length === 500 && r.lines;
  }, 15_000, 'all 500 lines');
  expect(stored.map((l) => l.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  const e = await until(async () => {
    const r = await (await fetch(`${wm.url}/api/v1/executions/${id}`)).json();
    return r.status === 'completed' && r;
  });
  expect(e.log_lines).toBe(500);
}, 60_000);

it('a database outage while lines arrive: the failure to store them is logged once, not for every batch each second, and every line is stored after', async () => {
  await wm.stop();
  const said: string[] = [];
  const logger = createLogger('worker-manager', 'silent');
  for (const level of ['error', 'warn', 'info'] as const) {
    vi.spyOn(logger, level).mockImplementation(((...args: unknown[]) => void said.push(String(args.find((a) => typeof a === 'string')))) as never);
  }
  wm = await startWorkerManager(wmConfig, logger);
  const res = await fetch(`${wm.url}/api/v1/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'x' }) });
  const id = ((await res.json()) as { id: string }).id;

  // a worker's batches every 100 ms for 2.5 s: each is redelivered every second while the database is down
  await env.databaseDown(async () => {
    for (let i = 0; i < 25; i++) {
      await publishLines(wm.ctx.bus, id, lines(i * 20 + 1, i * 20 + 20));
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  const stored = await until(async () => {
    const r = (await (await fetch(`${wm.url}/api/v1/executions/${id}/logs?limit=1000`)).json()) as { lines?: LogLine[] };
    return r.lines?.length === 500 && r.lines;
  }, 15_000, 'all 500 lines');
  expect(stored.map((l) => l.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  expect(said.filter((m) => m.startsWith('storing log lines failed')).length).toBe(1);
  expect(said.filter((m) => m === 'storing log lines works again').length).toBe(1);
}, 60_000);

it('a database outage: forgetting workers long gone (each second here) and recording worker exits say their failure once, and when forgetting works again', async () => {
  await wm.stop();
  const said: string[] = [];
  const logger = createLogger('worker-manager', 'silent');
  for (const level of ['error', 'warn', 'info'] as const) {
    vi.spyOn(logger, level).mockImplementation(((...args: unknown[]) => void said.push(String(args.find((a) => typeof a === 'string')))) as never);
  }
  wm = await startWorkerManager({ ...wmConfig, forgetWorkersAfterMs: 1000 }, logger);
  const pids: number[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await fetch(`${wm.url}/api/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'shell' }) });
    pids.push(((await res.json()) as { pid: number }).pid);
  }
  await env.databaseDown(async () => {
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await until(async () => pids.every(pidGone));
    await new Promise((r) => setTimeout(r, 2500));
  });
  await until(async () => said.includes('forgetting workers long gone works again'), 5000, 'forgetting works again');
  await wm.stop();
  wm = await startWorkerManager(wmConfig);
  expect(said.filter((m) => m.startsWith('forgetting workers long gone failed')).length).toBe(1);
  expect(said.filter((m) => m.startsWith('recording a worker exit failed')).length).toBe(1);
}, 60_000);

it('stop() stops the workers it started; a record whose process is gone becomes exited at start-up', async () => {
  const res = await fetch(`${wm.url}/api/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'shell' }) });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number };
  expect(pidGone(w.pid)).toBe(false);
  // a record left "running" by an earlier run whose process no longer exists
  const ghost = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a99';
  await wm.ctx.db.query(
    `INSERT INTO workers (id, type, status, pid, host, labels, capacity) VALUES ($1, 'shell', 'running', 2147483646, $2, '{}', '{"slots":1,"cpu_cores":1,"memory_bytes":1}')`,
    [ghost, hostname()],
  );
  await wm.stop();
  expect(pidGone(w.pid)).toBe(true);
  wm = await startWorkerManager(wmConfig);
  const stopped = await (await fetch(`${wm.url}/api/v1/workers/${w.id}`)).json();
  expect(stopped).toMatchObject({ status: 'stopped' });
  const g = await (await fetch(`${wm.url}/api/v1/workers/${ghost}`)).json();
  expect(g).toMatchObject({ status: 'exited' });
}, 60_000);
