import { createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

// Jobs and pipelines are looked up in the real orchestrator.
let knownJob: string;
let knownPipeline: string;
let orchestrator: RunningService;
let env: TestEnv;
let svc: RunningService;

const post = (path: string, body: unknown) =>
  fetch(`${svc.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const patch = (path: string, body: unknown) =>
  fetch(`${svc.url}${path}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function expectProblem(res: Response, status: number, field?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = (await res.json()) as { errors?: { path: string; message: string }[]; detail: string };
  if (field) expect(body.errors?.map((e) => e.path)).toContain(field);
  return body;
}

beforeAll(async () => {
  env = createTestEnv();
  orchestrator = await startOrchestrator(env.config('orchestrator'));
  const create = async (path: string, body: unknown) =>
    ((await (await fetch(`${orchestrator.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).json()) as { id: string }).id;
  knownJob = await create('/api/v1/jobs', { name: 'nightly', command: 'true' });
  knownPipeline = await create('/api/v1/pipelines', { name: 'etl' });
  const base = env.config('scheduler');
  // no worker-manager: a firing fails to start (503) rather than reach one on the default port
  svc = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: orchestrator.url, 'worker-manager': 'http://127.0.0.1:1' } });
});

afterAll(async () => {
  await svc?.stop();
  await orchestrator?.stop();
  await env?.cleanup();
});

describe('schedules', () => {
  it('creates a cron schedule through the core alias with Location and next_run_at', async () => {
    const before = Date.now();
    const res = await post('/api/v1/schedule', { job_id: knownJob, cron: '*/5 * * * *' });
    expect(res.status).toBe(201);
    const s = await res.json();
    expect(res.headers.get('location')).toBe(`/api/v1/schedules/${s.id}`);
    expect(s).toMatchObject({ job_id: knownJob, cron: '*/5 * * * *', timezone: 'UTC', status: 'scheduled', enabled: true });
    const next = new Date(s.next_run_at);
    expect(next.getTime()).toBeGreaterThan(before);
    expect(next.getTime() - before).toBeLessThanOrEqual(5 * 60_000);
    expect(next.getUTCMinutes() % 5).toBe(0);
    expect(next.getUTCSeconds()).toBe(0);
    expect(s.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('computes next_run_at for a 6-field cron with seconds and for nicknames', async () => {
    const s = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '*/10 * * * * *' })).json();
    const next = new Date(s.next_run_at);
    expect(next.getUTCSeconds() % 10).toBe(0);
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(10_000);
    const h = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '@hourly' })).json();
    expect(h.next_run_at).toMatch(/T\d\d:00:00\.000Z$/);
    // daily, whatever the moment it was created: `?` is "any" and @midnight is @daily
    const tomorrow = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1)).toISOString();
    for (const cron of ['0 0 ? * *', '0 0 * * ?', '@midnight', '@daily']) {
      const d = await (await post('/api/v1/schedules', { job_id: knownJob, cron })).json();
      expect(d.next_run_at, cron).toBe(tomorrow);
    }
  });

  it('reads `5L` in the day of week as the last Friday of the month, and refuses `W`', async () => {
    const { nextCronRun } = await import('../src/cron.js');
    const from = new Date('2026-11-30T23:00:00Z');
    for (const cron of ['0 0 * * 5L', '0 0 * * FRIL', '0 0 * * 5#L', '0 0 0 * * fril']) {
      expect(nextCronRun(cron, 'UTC', from)?.toISOString(), cron).toBe('2026-12-25T00:00:00.000Z');
    }
    // in a list, only the element that says L is the last one: every Monday and the last Friday
    expect(nextCronRun('0 0 * * 1,5L', 'UTC', new Date('2026-12-21T01:00:00Z'))?.toISOString()).toBe('2026-12-25T00:00:00.000Z');
    expect(nextCronRun('0 0 L * *', 'UTC', from)?.toISOString()).toBe('2026-12-31T00:00:00.000Z');
    const s = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 * * 5L' })).json();
    const next = new Date(s.next_run_at);
    expect(next.getUTCDay()).toBe(5);
    expect(new Date(next.getTime() + 7 * 86_400_000).getUTCMonth()).not.toBe(next.getUTCMonth());
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 15W * *' }), 400, 'cron');
  });

  it('a name holding a newline is a 400 naming it', async () => {
    const body = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '@daily', name: 'nightly\nbackup' }), 400, 'name');
    expect(body.errors?.[0]?.message).toMatch(/control characters/);
  });

  it('follows the DST change in Europe/Madrid', async () => {
    // 09:00 Madrid is 08:00Z in winter (CET) and 07:00Z in summer (CEST); the clocks change on the last Sunday of March
    const res = await post('/api/v1/schedules', { job_id: knownJob, cron: '0 9 * * *', timezone: 'Europe/Madrid' });
    const s = await res.json();
    expect(s.timezone).toBe('Europe/Madrid');
    expect(new Date(s.next_run_at).toLocaleTimeString('en-GB', { timeZone: 'Europe/Madrid' })).toBe('09:00:00');
    const { nextCronRun } = await import('../src/cron.js');
    expect(nextCronRun('0 9 * * *', 'Europe/Madrid', new Date('2027-03-27T12:00:00Z'))?.toISOString()).toBe('2027-03-28T07:00:00.000Z');
    expect(nextCronRun('0 9 * * *', 'Europe/Madrid', new Date('2027-03-26T12:00:00Z'))?.toISOString()).toBe('2027-03-27T08:00:00.000Z');
    expect(nextCronRun('0 9 * * *', 'Europe/Madrid', new Date('2027-10-30T12:00:00Z'))?.toISOString()).toBe('2027-10-31T08:00:00.000Z');
  });

  it('fires on through the hour the clocks go back, once at a fixed time, and at the jump for a time the clocks skip', async () => {
    const { nextCronRun } = await import('../src/cron.js');
    const series = (cron: string, timezone: string, from: string, n: number) => {
      const out: string[] = [];
      for (let t = new Date(from); out.length < n; ) {
        t = nextCronRun(cron, timezone, t)!;
        out.push(t.toISOString().slice(0, 16));
      }
      return out;
    };
    // Madrid, 2027-10-31: 03:00 CEST (01:00Z) is 02:00 CET again; every 15 minutes means in real time
    expect(series('*/15 * * * *', 'Europe/Madrid', '2027-10-31T00:40:00Z', 4)).toEqual(['2027-10-31T00:45', '2027-10-31T01:00', '2027-10-31T01:15', '2027-10-31T01:30']);
    expect(series('*/20 * * * * *', 'Europe/Madrid', '2027-10-31T00:59:30Z', 2)).toEqual(['2027-10-31T00:59', '2027-10-31T01:00']);
    expect(series('@hourly', 'Europe/London', '2027-10-30T23:30:00Z', 3)).toEqual(['2027-10-31T00:00', '2027-10-31T01:00', '2027-10-31T02:00']);
    // New York, 2027-11-07: 01:30 comes twice (EDT, then EST); a daily 01:30 runs at the first
    expect(series('30 1 * * *', 'America/New_York', '2027-11-06T12:00:00Z', 2)).toEqual(['2027-11-07T05:30', '2027-11-08T06:30']);
    // New York, 2027-03-14: 02:30 never comes (02:00 EST is 03:00 EDT): it runs at the jump
    expect(series('30 2 * * *', 'America/New_York', '2027-03-13T12:00:00Z', 2)).toEqual(['2027-03-14T07:00', '2027-03-15T06:30']);
    expect(series('*/20 * * * *', 'America/New_York', '2027-03-14T06:30:00Z', 3)).toEqual(['2027-03-14T06:40', '2027-03-14T07:00', '2027-03-14T07:20']);
  });

  it('stores a time zone under its canonical name, on create and on PATCH, cron and one-shot alike', async () => {
    const later = new Date(Date.now() + 3600_000).toISOString();
    const cases: Array<[string, string]> = [
      ['europe/madrid', 'Europe/Madrid'],
      [' Europe/Madrid ', 'Europe/Madrid'],
      ['utc', 'UTC'],
      ['Etc/UTC', 'UTC'],
      ['AMERICA/NEW_YORK', 'America/New_York'],
      ['Asia/Kolkata', 'Asia/Kolkata'],
      ['Asia/Calcutta', 'Asia/Kolkata'],
      ['europe/kyiv', 'Europe/Kyiv'],
      ['America/Buenos_Aires', 'America/Argentina/Buenos_Aires'],
    ];
    for (const [given, canonical] of cases) {
      const cron = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 9 * * *', timezone: given })).json();
      expect(cron.timezone, given).toBe(canonical);
      const oneShot = await (await post('/api/v1/schedules', { job_id: knownJob, run_at: later, timezone: given })).json();
      expect(oneShot.timezone, given).toBe(canonical);
      const patched = await (await patch(`/api/v1/schedules/${oneShot.id}`, { timezone: given.toUpperCase() })).json();
      expect(patched.timezone, given).toBe(canonical);
      expect((await (await fetch(`${svc.url}/api/v1/schedules/${cron.id}`)).json()).timezone).toBe(canonical);
    }
    const madrid = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 9 * * *', timezone: 'europe/madrid' })).json();
    expect(new Date(madrid.next_run_at).toLocaleTimeString('en-GB', { timeZone: 'Europe/Madrid' })).toBe('09:00:00');
  });

  it('creates a one-shot run_at schedule and a pipeline schedule', async () => {
    const runAt = new Date(Date.now() + 3600_000).toISOString();
    const res = await post('/api/v1/schedules', { job_id: knownJob, run_at: runAt });
    expect(res.status).toBe(201);
    const s = await res.json();
    expect(s).toMatchObject({ cron: null, run_at: runAt, next_run_at: runAt, status: 'scheduled' });
    const p = await post('/api/v1/schedules', { pipeline_id: knownPipeline, cron: '0 0 * * *' });
    expect(p.status).toBe(201);
    expect((await p.json()).pipeline_id).toBe(knownPipeline);
  });

  it('answers 400 naming the field for bad input', async () => {
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: 'not a cron' }), 400, 'cron');
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '61 * * * *' }), 400, 'cron');
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '* * * * * * *' }), 400, 'cron');
    const never = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 31 2 *' }), 400, 'cron');
    expect(never.detail).toBe('invalid cron expression: never fires: no date matches it (e.g. February 31)');
    // croner overflows its stack looking for the 31st of four 30-day months
    const neverAtAll = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 31 4,6,9,11 *' }), 400, 'cron');
    expect(neverAtAll.detail).toBe(never.detail);
    // croner counts days and months from 0 in its messages: day 0 came out as -1, month 13 as 12
    const outOfRange: Array<[string, string]> = [
      ['0 0 0 * *', 'day of month 0 is out of range (1-31)'],
      ['0 0 32 * *', 'day of month 32 is out of range (1-31)'],
      ['0 0 * 0 *', 'month 0 is out of range (1-12 or JAN-DEC)'],
      ['0 0 * 1-13 *', 'month 13 is out of range (1-12 or JAN-DEC)'],
      ['70 * * * *', 'minute 70 is out of range (0-59)'],
      ['0 24 * * *', 'hour 24 is out of range (0-23)'],
      ['0 0 * * 8', 'day of week 8 is out of range (0-7 or SUN-SAT)'],
      ['60 0 0 * * *', 'second 60 is out of range (0-59)'],
    ];
    for (const [cron, message] of outOfRange) {
      const problem = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron }), 400, 'cron');
      expect(problem.errors, cron).toEqual([{ path: 'cron', message }]);
    }
    // croner 9 takes no W (nearest weekday) and said only 'configuration entry 3 (15W) contains illegal characters'
    const unsupported: Array<[string, string]> = [
      ['0 0 15W * *', 'day of month "15W": W (the weekday nearest a day) is not supported'],
      ['0 0 LW * *', 'day of month "LW": W (the weekday nearest a day) is not supported'],
      ['0 0 H * *', 'day of month "H": H is not supported (digits, names, * , - / ? L #)'],
      ['0 x * * *', 'hour "x": x is not supported (digits, names, * , - / ? L #)'],
      ['0 0 0 * * MON%2', 'day of week "MON%2": % is not supported (digits, names, * , - / ? L #)'],
    ];
    for (const [cron, message] of unsupported) {
      const problem = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron }), 400, 'cron');
      expect(problem.errors, cron).toEqual([{ path: 'cron', message }]);
    }
    // croner reads a pattern holding ':' as a date to fire once at; one in year 275760 held the
    // scheduler's event loop for hours (its health too), one in 2099 was taken as a cron
    const dated = 'is a date-time, not a cron expression (5 or 6 fields): give run_at for one run at a date';
    for (const cron of ['2099-01-01T00:00:00Z', '0 0 * * 1:2', '+275760-09-13T00:00:00.000Z']) {
      const problem = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron }), 400, 'cron');
      expect(problem.errors, cron).toEqual([{ path: 'cron', message: dated }]);
    }
    const cronOne = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 1 1 *', enabled: false })).json();
    await expectProblem(await patch(`/api/v1/schedules/${cronOne.id}`, { cron: '+275760-09-13T00:00:00.000Z' }), 400, 'cron');
    expect((await (await fetch(`${svc.url}/api/v1/schedules/${cronOne.id}`)).json()).cron).toBe('0 0 1 1 *');
    await fetch(`${svc.url}/api/v1/schedules/${cronOne.id}`, { method: 'DELETE' });
    const local = await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, run_at: '2099-01-01T09:00:00' }), 400, 'run_at');
    expect(local.errors?.[0]?.message).toBe('must be an ISO 8601 date-time with Z or an offset, e.g. 2027-01-01T09:00:00+01:00');
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, cron: '* * * * *', timezone: 'Mars/Olympus' }), 400, 'timezone');
    const later = new Date(Date.now() + 3600_000).toISOString();
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, run_at: later, timezone: 'Mars/Olympus' }), 400, 'timezone');
    const oneShot = await (await post('/api/v1/schedules', { job_id: knownJob, run_at: later })).json();
    await expectProblem(await patch(`/api/v1/schedules/${oneShot.id}`, { timezone: 'Mars/Olympus' }), 400, 'timezone');
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob, run_at: '2001-01-01T00:00:00Z' }), 400, 'run_at');
    await expectProblem(await post('/api/v1/schedules', { job_id: knownJob }), 400, 'cron');
    await expectProblem(await post('/api/v1/schedules', { cron: '* * * * *' }), 400, 'job_id');
    await expectProblem(await post('/api/v1/schedules', { job_id: 'nope', cron: '* * * * *' }), 400, 'job_id');
    const unknown = newId();
    // a missing resource, as a missing job_id is to worker-manager's POST /execute
    const body = await expectProblem(await post('/api/v1/schedule', { job_id: unknown, cron: '* * * * *' }), 404, 'job_id');
    expect(body.detail).toBe(`job ${unknown} not found`);
    await expectProblem(await post('/api/v1/schedules', { pipeline_id: newId(), cron: '* * * * *' }), 404, 'pipeline_id');
    await expectProblem(
      await fetch(`${svc.url}/api/v1/schedules`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{bad' }),
      400,
      'body',
    );
  });

  it('names both fields of a pair when the problem is about both: neither or both of job_id and pipeline_id, cron and run_at', async () => {
    const errors = async (body: unknown) => ((await expectProblem(await post('/api/v1/schedules', body), 400)).errors ?? []);
    const later = new Date(Date.now() + 3600_000).toISOString();
    expect(await errors({ cron: '* * * * *' })).toEqual([
      { path: 'job_id', message: 'give job_id or pipeline_id: neither was given' },
      { path: 'pipeline_id', message: 'give job_id or pipeline_id: neither was given' },
    ]);
    expect(await errors({ job_id: knownJob, pipeline_id: knownPipeline, cron: '* * * * *' })).toEqual([
      { path: 'job_id', message: 'give only one of job_id or pipeline_id: both were given' },
      { path: 'pipeline_id', message: 'give only one of job_id or pipeline_id: both were given' },
    ]);
    expect((await errors({ job_id: knownJob })).map((e) => e.path)).toEqual(['cron', 'run_at']);
    expect((await errors({ job_id: knownJob, cron: '* * * * *', run_at: later })).map((e) => e.path)).toEqual(['cron', 'run_at']);
    const detail = (await expectProblem(await post('/api/v1/schedules', {}), 400)).detail;
    expect(detail).toBe('invalid body: job_id, pipeline_id, cron, run_at');
    const created = (await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 * * *' })).json()) as { id: string };
    const both = await expectProblem(await patch(`/api/v1/schedules/${created.id}`, { cron: '0 1 * * *', run_at: later }), 400);
    expect(both.errors).toEqual(['cron', 'run_at'].map((path) => ({ path, message: 'give only one of cron or run_at: both were given' })));
  });

  it('answers 503 when the orchestrator is unreachable', async () => {
    const dead = createTestEnv();
    const base = dead.config('scheduler');
    const other = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: 'http://127.0.0.1:1' } });
    try {
      const res = await fetch(`${other.url}/api/v1/schedules`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ job_id: knownJob, cron: '* * * * *' }),
      });
      await expectProblem(res, 503);
    } finally {
      await other.stop();
      await dead.cleanup();
    }
  });

  it('lists newest first with X-Total-Count, filters and paging; the core alias gives the same array', async () => {
    const otherJob = knownPipeline; // any id: listed by job_id filter only
    const res = await fetch(`${svc.url}/api/v1/schedules?limit=2`);
    expect(res.status).toBe(200);
    const total = Number(res.headers.get('x-total-count'));
    expect(total).toBeGreaterThanOrEqual(5);
    const page = await res.json();
    expect(page).toHaveLength(2);
    expect(page[0].created_at >= page[1].created_at).toBe(true);
    const all = await (await fetch(`${svc.url}/api/v1/scheduled?limit=1000`)).json();
    expect(Array.isArray(all)).toBe(true);
    expect(all).toHaveLength(total);
    expect(all[0].id).toBe(page[0].id);
    const second = await (await fetch(`${svc.url}/api/v1/schedules?limit=2&offset=1`)).json();
    expect(second[0].id).toBe(page[1].id);
    const byJob = await fetch(`${svc.url}/api/v1/schedules?job_id=${otherJob}`);
    expect(await byJob.json()).toEqual([]);
    expect(byJob.headers.get('x-total-count')).toBe('0');
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules?limit=0`), 400, 'limit');
    const byPipeline = (await (await fetch(`${svc.url}/api/v1/schedules?pipeline_id=${knownPipeline}&limit=1000`)).json()) as Array<{ pipeline_id: string }>;
    expect(byPipeline.length).toBeGreaterThan(0);
    expect(byPipeline.every((x) => x.pipeline_id === knownPipeline)).toBe(true);
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules?pipeline_id=x`), 400, 'pipeline_id');
  });

  it('pauses and resumes with PATCH enabled, filters by enabled, and deletes', async () => {
    const s = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 * * * *' })).json();
    const paused = await patch(`/api/v1/schedules/${s.id}`, { enabled: false });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ id: s.id, enabled: false, status: 'paused', next_run_at: null });
    const disabled = await (await fetch(`${svc.url}/api/v1/schedules?enabled=false`)).json();
    expect(disabled.map((x: { id: string }) => x.id)).toEqual([s.id]);
    const resumed = await (await patch(`/api/v1/schedules/${s.id}`, { enabled: true })).json();
    expect(resumed).toMatchObject({ enabled: true, status: 'scheduled' });
    expect(resumed.next_run_at).toMatch(/T\d\d:00:00\.000Z$/);
    const moved = await (await patch(`/api/v1/schedules/${s.id}`, { cron: '30 6 * * *', timezone: 'Europe/Madrid' })).json();
    expect(new Date(moved.next_run_at).toLocaleTimeString('en-GB', { timeZone: 'Europe/Madrid' })).toBe('06:30:00');
    await expectProblem(await patch(`/api/v1/schedules/${s.id}`, { cron: 'x y' }), 400, 'cron');
    await expectProblem(await patch(`/api/v1/schedules/${s.id}`, { timezone: 'No/Where' }), 400, 'timezone');
    await expectProblem(await patch(`/api/v1/schedules/${s.id}`, { run_at: '2000-01-01T00:00:00Z' }), 400, 'run_at');
    await expectProblem(await patch(`/api/v1/schedules/${s.id}`, { enabled: 'yes' }), 400, 'enabled');
    expect((await (await patch(`/api/v1/schedules/${s.id}`, { name: 'hourly' })).json()).name).toBe('hourly');
    expect((await (await patch(`/api/v1/schedules/${s.id}`, { name: null })).json()).name).toBeNull();

    const got = await fetch(`${svc.url}/api/v1/schedules/${s.id}`);
    expect((await got.json()).cron).toBe('30 6 * * *');
    const runs = await fetch(`${svc.url}/api/v1/schedules/${s.id}/runs`);
    expect(runs.status).toBe(200);
    expect(await runs.json()).toEqual([]);
    expect((await fetch(`${svc.url}/api/v1/schedules/${s.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules/${s.id}`), 404);
  });

  it('keeps every change of PATCHes sent at the same moment: none undoes another', async () => {
    for (let round = 0; round < 3; round++) {
      const s = await (await post('/api/v1/schedules', { job_id: knownJob, cron: '0 0 1 1 *' })).json();
      const changes = [{ enabled: false }, { overlap_policy: 'allow' }, { misfire_policy: 'skip' }, { name: 'yearly' }, { timezone: 'Europe/Madrid' }];
      const answers = await Promise.all(changes.map((c) => patch(`/api/v1/schedules/${s.id}`, c)));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
      const got = await (await fetch(`${svc.url}/api/v1/schedules/${s.id}`)).json();
      expect(got).toMatchObject({ status: 'paused', next_run_at: null, overlap_policy: 'allow', misfire_policy: 'skip', name: 'yearly', timezone: 'Europe/Madrid' });
      expect((await fetch(`${svc.url}/api/v1/schedules/${s.id}`, { method: 'DELETE' })).status).toBe(204);
    }
  });

  it('answers 404 for unknown schedules and 400 for bad ids', async () => {
    const id = newId();
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules/${id}`), 404);
    await expectProblem(await patch(`/api/v1/schedules/${id}`, { enabled: false }), 404);
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules/${id}`, { method: 'DELETE' }), 404);
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules/${id}/runs`), 404);
    await expectProblem(await fetch(`${svc.url}/api/v1/schedules/not-a-uuid`), 400, 'id');
  });

  it('documents every route in the OpenAPI document', async () => {
    const doc = await (await fetch(`${svc.url}/openapi.json`)).json();
    for (const p of ['/api/v1/schedule', '/api/v1/scheduled', '/api/v1/schedules', '/api/v1/schedules/{id}', '/api/v1/schedules/{id}/runs', '/api/v1/workers', '/api/v1/workers/{id}', '/api/v1/workers/{id}/heartbeat'])
      expect(Object.keys(doc.paths)).toContain(p);
  });
});

describe('firings history', () => {
  it('keeps 8 days of firings, and each schedule its newest and its newest pipeline run for ever', async () => {
    // an every-second schedule fires 86,400 times a day: its firings grew without end
    const ids: string[] = [];
    for (const body of [{ job_id: knownJob }, { job_id: knownJob }, { pipeline_id: knownPipeline }]) {
      const res = await post('/api/v1/schedules', { ...body, cron: '0 0 1 1 *' });
      expect(res.status).toBe(201);
      ids.push((await res.json()).id as string);
    }
    const [busy, quiet, piped] = ids as [string, string, string];
    const fire = (schedule: string, daysAgo: number, pipelineRun: string | null = null) =>
      svc.ctx.db.query(
        `INSERT INTO schedule_runs (id, schedule_id, scheduled_at, fired_at, outcome, pipeline_run_id)
         VALUES ($1, $2, now() - make_interval(days => $3), now() - make_interval(days => $3), 'fired', $4)`,
        [newId(), schedule, daysAgo, pipelineRun],
      );
    for (const days of [12, 11, 10, 9]) await fire(busy, days);
    await fire(busy, 7);
    await fire(busy, 0);
    for (const days of [12, 10]) await fire(quiet, days);
    const oldRun = newId();
    await fire(piped, 12, newId());
    await fire(piped, 10, oldRun);
    await fire(piped, 9);
    const ages = async (id: string) =>
      ((await (await fetch(`${svc.url}/api/v1/schedules/${id}/runs`)).json()) as { scheduled_at: string }[]).map((r) =>
        Math.round((Date.now() - Date.parse(r.scheduled_at)) / 86_400_000),
      );
    expect(await ages(busy)).toEqual([0, 7, 9, 10, 11, 12]);

    // old firings go at start-up and hourly after
    const config = svc.ctx.config;
    await svc.stop();
    svc = await startScheduler(config);
    await until(() => ages(busy), (a) => a.length === 2);
    expect(await ages(busy)).toEqual([0, 7]);
    expect(await ages(quiet)).toEqual([10]);
    expect(await ages(piped)).toEqual([9, 10]);
    const kept = await svc.ctx.db.query('SELECT pipeline_run_id FROM schedule_runs WHERE schedule_id = $1 AND pipeline_run_id IS NOT NULL', [piped]);
    expect(kept.rows).toEqual([{ pipeline_run_id: oldRun }]);
  });
});
