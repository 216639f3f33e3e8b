import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTestEnv, encodeJson, newId, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import type { Schedule, ScheduleRun } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../src/service.js';

// Real HTTP servers standing in for the orchestrator (job lookups) and worker-manager (executions).
const job = newId();
const executes: { job_id: string; id: string; at: number }[] = [];
const cancels: string[] = [];
let peers: Server;
let env: TestEnv;
let config: Config;
let svc: RunningService;

const post = async (body: unknown): Promise<Schedule> => {
  const res = await fetch(`${svc.url}/api/v1/schedules`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(201);
  return res.json();
};
const runs = async (id: string): Promise<ScheduleRun[]> => (await fetch(`${svc.url}/api/v1/schedules/${id}/runs`)).json();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const executed = (id: string | null) => executes.some((e) => e.id === id);

beforeAll(async () => {
  peers = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const json = (status: number, v: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (req.method === 'GET' && req.url === `/api/v1/jobs/${job}`) return json(200, { id: job });
      if (req.method === 'POST' && req.url === '/api/v1/execute') {
        const e = { job_id: (JSON.parse(body) as { job_id: string }).job_id, id: newId(), at: Date.now() };
        executes.push(e);
        return json(202, { id: e.id, job_id: e.job_id, status: 'queued', created_at: new Date().toISOString() });
      }
      const cancel = /^\/api\/v1\/executions\/([^/]+)\/cancel$/.exec(req.url ?? '');
      if (req.method === 'POST' && cancel) {
        cancels.push(cancel[1]!);
        return json(202, { id: cancel[1], status: 'cancelled' });
      }
      json(404, { detail: 'not found' });
    });
  });
  await new Promise<void>((r) => peers.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(peers.address() as AddressInfo).port}`;
  env = createTestEnv();
  const base = env.config('scheduler');
  config = { ...base, urls: { ...base.urls, orchestrator: url, 'worker-manager': url } };
  svc = await startScheduler(config);
});

afterAll(async () => {
  await svc?.stop();
  await env?.cleanup();
  await new Promise((r) => peers?.close(r));
});

describe('cron firing', () => {
  it('fires a */1 seconds schedule once a second, on time, and stops when paused', async () => {
    const s = await post({ job_id: job, cron: '*/1 * * * * *', overlap_policy: 'allow' });
    await sleep(3300);
    const paused = await fetch(`${svc.url}/api/v1/schedules/${s.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ enabled: false }),
    });
    expect((await paused.json()).status).toBe('paused');
    // a firing under way when it was paused is recorded `pending` until its execute returns
    let fired = (await runs(s.id)).reverse();
    for (let i = 0; i < 100 && fired.some((r) => r.outcome === 'pending'); i++) {
      await sleep(20);
      fired = (await runs(s.id)).reverse();
    }
    expect(fired.length).toBeGreaterThanOrEqual(3);
    expect(fired.length).toBeLessThanOrEqual(4);
    for (let i = 0; i < fired.length; i++) {
      const r = fired[i]!;
      expect(r.outcome).toBe('fired');
      expect(r.scheduled_at).toMatch(/\.000Z$/);
      if (i > 0) expect(Date.parse(r.scheduled_at) - Date.parse(fired[i - 1]!.scheduled_at)).toBe(1000);
      expect(Date.parse(r.fired_at!) - Date.parse(r.scheduled_at)).toBeLessThan(250);
      expect(executed(r.execution_id)).toBe(true);
    }
    const count = fired.length;
    await sleep(1500);
    expect((await runs(s.id)).length).toBe(count);
    const got = await (await fetch(`${svc.url}/api/v1/schedules/${s.id}`)).json();
    expect(got.last_run_at).toBe(fired.at(-1)?.scheduled_at ?? got.last_run_at);
  });

  it('fires a one-shot run_at schedule once and completes it', async () => {
    const runAt = new Date(Math.ceil((Date.now() + 1200) / 1000) * 1000).toISOString();
    const s = await post({ job_id: job, run_at: runAt });
    await sleep(Date.parse(runAt) - Date.now() + 400);
    const r = await runs(s.id);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ scheduled_at: runAt, outcome: 'fired' });
    const after = await (await fetch(`${svc.url}/api/v1/schedules/${s.id}`)).json();
    expect(after).toMatchObject({ status: 'completed', next_run_at: null, last_run_at: runAt });
  });

  it('forbid skips while the previous run is active; replace cancels it', async () => {
    const s = await post({ job_id: job, cron: '*/1 * * * * *' });
    await sleep(2300);
    const r = (await runs(s.id)).reverse();
    expect(r[0]!.outcome).toBe('fired');
    expect(r.slice(1).length).toBeGreaterThan(0);
    for (const skipped of r.slice(1)) {
      expect(skipped.outcome).toBe('skipped');
      expect(skipped.message).toContain(r[0]!.execution_id!);
    }
    // the first run finishes: the next firing runs again
    await svc.ctx.bus.js.publish(
      svc.ctx.bus.subjects.executionStatus(r[0]!.execution_id!),
      encodeJson({ execution_id: r[0]!.execution_id, job_id: job, worker_id: null, status: 'completed', timestamp: new Date().toISOString() }),
    );
    await sleep(1300);
    const later = await runs(s.id);
    const again = later.filter((x) => x.outcome === 'fired' && x.execution_id !== r[0]!.execution_id);
    expect(again).toHaveLength(1); // and the firings after it are skipped: it is still active
    expect(later.filter((x) => x.outcome === 'skipped' && x.scheduled_at > again[0]!.scheduled_at).every((x) => x.message?.includes(again[0]!.execution_id!))).toBe(true);

    await fetch(`${svc.url}/api/v1/schedules/${s.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ overlap_policy: 'replace' }),
    });
    await sleep(1300);
    const replaced = await runs(s.id);
    expect(replaced[0]!.outcome).toBe('fired');
    expect(replaced[0]!.message).toBe(`replaced ${again[0]!.execution_id}`);
    expect(cancels).toContain(again[0]!.execution_id);
    await fetch(`${svc.url}/api/v1/schedules/${s.id}`, { method: 'DELETE' });
  });

  it('after downtime, run_once catches up once and skip not at all', async () => {
    const once = await post({ job_id: job, cron: '0 0 1 1 *', enabled: false, misfire_policy: 'run_once' });
    const skip = await post({ job_id: job, cron: '0 0 1 1 *', enabled: false, misfire_policy: 'skip' });
    // as if the scheduler had been down for three firings of a one-second schedule
    const missed = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000);
    await svc.ctx.db.query(`UPDATE schedules SET enabled = true, next_run_at = $2 WHERE id = ANY($1)`, [[once.id, skip.id], missed]);
    await sleep(1500);
    const o = await runs(once.id);
    expect(o).toHaveLength(1);
    expect(o[0]).toMatchObject({ scheduled_at: missed.toISOString(), outcome: 'fired' });
    expect(await runs(skip.id)).toEqual([]);
    for (const id of [once.id, skip.id]) {
      const s = await (await fetch(`${svc.url}/api/v1/schedules/${id}`)).json();
      expect(s.next_run_at).toMatch(/-01-01T00:00:00\.000Z$/);
      expect(Date.parse(s.next_run_at)).toBeGreaterThan(Date.now());
    }
  });

  it('two scheduler replicas on one database fire each second once', async () => {
    const second = await startScheduler(config);
    try {
      const s = await post({ job_id: job, cron: '*/1 * * * * *', overlap_policy: 'allow' });
      await sleep(3200);
      await fetch(`${svc.url}/api/v1/schedules/${s.id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ enabled: false }),
      });
      await sleep(200);
      const r = await runs(s.id);
      expect(r.length).toBeGreaterThanOrEqual(3);
      const ids = r.map((x) => x.execution_id);
      expect(ids.every(executed)).toBe(true);
      // one execute request per firing, not one per replica
      expect(executes.filter((e) => ids.includes(e.id))).toHaveLength(r.length);
      const firstAt = Math.min(...r.map((x) => Date.parse(x.scheduled_at)));
      const created = executes.filter((e) => e.at >= firstAt);
      expect(created).toHaveLength(r.length);
    } finally {
      await second.stop();
    }
  });
});
