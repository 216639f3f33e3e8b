import { createTestEnv, encodeJson, newId, type RunningService, type TestEnv } from '@hodei/platform';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { subjects, type WorkerHeartbeat } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let nc: NatsConnection;
const TIMEOUT_MS = 400;

const post = (path: string, body?: unknown) =>
  fetch(`${svc.url}${path}`, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const getWorker = async (id: string) => (await fetch(`${svc.url}/api/v1/workers/${id}`)).json();


beforeAll(async () => {
  env = createTestEnv();
  svc = await startScheduler(env.config('scheduler', { heartbeatIntervalMs: 100, heartbeatTimeoutMs: TIMEOUT_MS }));
  nc = await connect({ servers: svc.ctx.config.natsUrl });
});

afterAll(async () => {
  await nc?.close();
  await svc?.stop();
  await env?.cleanup();
});

describe('worker registry', () => {
  it('registers a worker with defaults (201) and lists it with free capacity', async () => {
    const res = await post('/api/v1/workers', { type: 'shell' });
    expect(res.status).toBe(201);
    const w = await res.json();
    expect(res.headers.get('location')).toBe(`/api/v1/workers/${w.id}`);
    expect(w).toMatchObject({
      type: 'shell',
      status: 'online',
      labels: {},
      capacity: { slots: 4, cpu_cores: 1, memory_bytes: 1024 ** 3 },
      free: { slots: 4, cpu_cores: 1, memory_bytes: 1024 ** 3 },
      running_executions: [],
    });
    expect(w.registered_at).toMatch(/\.\d{3}Z$/);
    expect(w.last_heartbeat_at).toMatch(/\.\d{3}Z$/);
    const list = await fetch(`${svc.url}/api/v1/workers`);
    expect(list.headers.get('x-total-count')).toBe('1');
    expect((await list.json()).map((x: { id: string }) => x.id)).toEqual([w.id]);
  });

  it('re-registering an existing id updates it and answers 200', async () => {
    const id = newId();
    const first = await post('/api/v1/workers', { id, type: 'shell', name: 'a', labels: { pool: 'x' }, capacity: { slots: 2, cpu_cores: 2, memory_bytes: 1024 * 1024 } });
    expect(first.status).toBe(201);
    await svc.ctx.db.query(`UPDATE workers SET status = 'offline' WHERE id = $1`, [id]);
    const again = await post('/api/v1/workers', { id, type: 'shell', name: 'b', labels: { pool: 'y' }, host: 'h1', pid: 42 });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ id, name: 'b', status: 'online', labels: { pool: 'y' }, host: 'h1', pid: 42, capacity: { slots: 4 } });
  });

  it('lists by status with paging, newest first', async () => {
    const a = await (await post('/api/v1/workers', { name: 'p1' })).json();
    const b = await (await post('/api/v1/workers', { name: 'p2' })).json();
    const page = await (await fetch(`${svc.url}/api/v1/workers?status=online&limit=2`)).json();
    expect(page.map((x: { id: string }) => x.id)).toEqual([b.id, a.id]);
    const stoppedRes = await fetch(`${svc.url}/api/v1/workers?status=stopped`);
    expect(await stoppedRes.json()).toEqual([]);
    const bad = await fetch(`${svc.url}/api/v1/workers?status=sleepy`);
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0].path).toBe('status');
  });

  it('answers 400 naming the field and 404 for unknown workers', async () => {
    const bad = await post('/api/v1/workers', { type: 'docker' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors.map((e: { path: string }) => e.path)).toContain('type');
    const slots = await post('/api/v1/workers', { capacity: { slots: 0 } });
    expect((await slots.json()).errors.map((e: { path: string }) => e.path)).toContain('capacity.slots');
    // a capacity field it does not know was dropped (a worker offering the defaults); a pid past
    // PostgreSQL's integer was a 400 naming no field
    const cases: Array<[unknown, string]> = [
      [{ capacity: { gpus: 1 } }, 'capacity.gpus'],
      [{ capacity: { memory: '4GiB' } }, 'capacity.memory'],
      [{ pid: 99_999_999_999 }, 'pid'],
      [{ host: '' }, 'host'],
      // 200,000 labels (3 MB) were stored, and returned by every list of workers: no worker process
      // takes more than its HODEI_WORKER_LABELS entry holds, as worker-manager already says
      [{ labels: Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`l${i}`, 'v'])) }, 'labels'],
    ];
    for (const [body, field] of cases) {
      const res = await post('/api/v1/workers', body);
      expect(res.status, field).toBe(400);
      expect((await res.json()).errors.map((e: { path: string }) => e.path), field).toEqual([field]);
    }
    const many = await post('/api/v1/workers', { labels: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`label${i}`, 'value'])) });
    expect((await many.json()).errors).toEqual([{ path: 'labels', message: expect.stringMatching(/^are \d+ bytes as JSON; a worker process takes at most 131051: give fewer or shorter labels$/) }]);
    const id = newId();
    expect((await fetch(`${svc.url}/api/v1/workers/${id}`)).status).toBe(404);
    expect((await post(`/api/v1/workers/${id}/heartbeat`)).status).toBe(404);
    expect((await fetch(`${svc.url}/api/v1/workers/${id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await fetch(`${svc.url}/api/v1/workers/nope`)).status).toBe(400);
  });

  it('takes REST heartbeats, with or without a body, and draining', async () => {
    const w = await (await post('/api/v1/workers', { name: 'rest' })).json();
    await new Promise((r) => setTimeout(r, 20));
    const res = await post(`/api/v1/workers/${w.id}/heartbeat`);
    expect(res.status).toBe(200);
    const hb = await res.json();
    expect(Object.keys(hb).sort()).toEqual(['id', 'last_heartbeat_at', 'status', 'written_off']);
    expect(hb.written_off).toEqual([]);
    expect(hb.status).toBe('online');
    expect(hb.last_heartbeat_at > w.last_heartbeat_at).toBe(true);
    const draining = await (await post(`/api/v1/workers/${w.id}/heartbeat`, { status: 'draining' })).json();
    expect(draining.status).toBe('draining');
    expect((await getWorker(w.id)).status).toBe('draining');
    const bad = await post(`/api/v1/workers/${w.id}/heartbeat`, { status: 'asleep' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).errors[0].path).toBe('status');
  });

  it('takes NATS heartbeats, and a silent worker goes offline after the time-out', async () => {
    const w = await (await post('/api/v1/workers', { name: 'nats' })).json();
    const s = subjects(svc.ctx.config.natsPrefix);
    const beat = (status: 'online' | 'draining' = 'online') => {
      const hb: WorkerHeartbeat = { worker_id: w.id, status, running_executions: [], timestamp: new Date().toISOString() };
      nc.publish(s.heartbeat(w.id), encodeJson(hb));
    };
    // beating faster than the time-out keeps it online well past the time-out
    const timer = setInterval(() => beat(), 100);
    await new Promise((r) => setTimeout(r, TIMEOUT_MS * 3));
    const alive = await getWorker(w.id);
    expect(alive.status).toBe('online');
    expect(Date.parse(alive.last_heartbeat_at) - Date.parse(w.last_heartbeat_at)).toBeGreaterThan(TIMEOUT_MS);
    clearInterval(timer);
    const silentSince = Date.now();
    const off = await until(() => getWorker(w.id), (x) => x.status === 'offline');
    expect(off.status).toBe('offline');
    expect(Date.now() - silentSince).toBeLessThan(TIMEOUT_MS * 3);
    // a heartbeat brings it back
    beat('draining');
    expect((await until(() => getWorker(w.id), (x) => x.status === 'draining')).status).toBe('draining');
    beat('online');
    expect((await until(() => getWorker(w.id), (x) => x.status === 'online')).status).toBe('online');
    const metrics = await (await fetch(`${svc.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`hodei_worker_heartbeat_age_seconds\\{worker="${w.id}"`));
    expect(metrics).toMatch(/hodei_workers\{status="online"/);
  });

  it('marks a worker offline at once when worker-manager reports its process exited', async () => {
    // a heartbeat time-out far beyond the wait: only the exit can take it offline
    const own = createTestEnv();
    const other = await startScheduler(own.config('scheduler', { heartbeatTimeoutMs: 60_000 }));
    try {
      const w = await (await fetch(`${other.url}/api/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'exits' }) })).json();
      const s = subjects(other.ctx.config.natsPrefix);
      await other.ctx.bus.js.publish(s.workerEvent(w.id, 'exited'), encodeJson({ worker_id: w.id, exit_code: 1 }));
      const off = await until(async () => (await fetch(`${other.url}/api/v1/workers/${w.id}`)).json(), (x) => x.status === 'offline', 2000);
      expect(off.status).toBe('offline');
    } finally {
      await other.stop();
      await own.cleanup();
    }
  });

  it('deregisters with DELETE: stopped, and heartbeats do not revive it', async () => {
    const w = await (await post('/api/v1/workers', { name: 'bye' })).json();
    const res = await fetch(`${svc.url}/api/v1/workers/${w.id}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect((await res.json()).status).toBe('stopped');
    expect((await (await post(`/api/v1/workers/${w.id}/heartbeat`)).json()).status).toBe('stopped');
    const stopped = await (await fetch(`${svc.url}/api/v1/workers?status=stopped`)).json();
    expect(stopped.map((x: { id: string }) => x.id)).toContain(w.id);
  });

  it('forgets stopped, exited and silent workers after HODEI_FORGET_WORKERS_AFTER_MS, and their metric series with them; a forgotten one registers anew', async () => {
    const own = createTestEnv();
    const other = await startScheduler(own.config('scheduler', { heartbeatTimeoutMs: 200, forgetWorkersAfterMs: 1500 }));
    const register = async (name: string) =>
      (await (await fetch(`${other.url}/api/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })).json()).id as string;
    const series = async (id: string) =>
      (await (await fetch(`${other.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('hodei_worker') && l.includes(`worker="${id}"`)).map((l) => l.split('{')[0]);
    const status = async (id: string) => {
      const res = await fetch(`${other.url}/api/v1/workers/${id}`);
      return res.status === 404 ? 'forgotten' : ((await res.json()).status as string);
    };
    const silent = await register('silent');
    const exited = await register('exited');
    const deleted = await register('deleted');
    try {
      expect(await series(silent)).toEqual(['hodei_worker_slots', 'hodei_worker_slots', 'hodei_worker_heartbeat_age_seconds']);
      await fetch(`${other.url}/api/v1/workers/${deleted}`, { method: 'DELETE' });
      expect(await series(deleted)).toEqual([]);
      await other.ctx.bus.js.publish(subjects(other.ctx.config.natsPrefix).workerEvent(exited, 'exited'), encodeJson({ worker_id: exited, exit_code: 1 }));
      // while listed as offline, a worker keeps its heartbeat age
      await until(() => Promise.all([status(silent), status(exited)]), (s) => s.every((x) => x === 'offline'));
      expect(await series(exited)).toEqual(['hodei_worker_heartbeat_age_seconds']);
      // an agent killed with kill -9 only falls silent: it is forgotten all the same
      await until(() => Promise.all([status(silent), status(exited), status(deleted)]), (s) => s.every((x) => x === 'forgotten'), 5000);
      expect([await series(silent), await series(exited), await series(deleted)]).toEqual([[], [], []]);
      expect((await (await fetch(`${other.url}/api/v1/workers`)).json())).toEqual([]);
      // one that was only away hears it is unknown at its next heartbeat, and registers anew
      expect((await fetch(`${other.url}/api/v1/workers/${silent}/heartbeat`, { method: 'POST' })).status).toBe(404);
      const reply = await other.ctx.bus.nc.request(subjects(other.ctx.config.natsPrefix).heartbeat(silent), encodeJson({ worker_id: silent, status: 'online', running_executions: [], timestamp: new Date().toISOString() }), { timeout: 5000 });
      expect(reply.json<{ status: string }>().status).toBe('unknown');
      const again = await fetch(`${other.url}/api/v1/workers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: silent }) });
      expect(again.status).toBe(201);
      expect(await status(silent)).toBe('online');
    } finally {
      await other.stop();
      await own.cleanup();
    }
  });
});
