// Cron firing against the real path: the orchestrator holds the jobs, worker-manager takes each
// firing's execute, and a worker agent runs `true` or `sleep` on this installation.
import { createTestEnv, serviceAddresses, workerOnline, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import type { Execution, Schedule, ScheduleRun } from '@hodei/types';
import { startWorker, type WorkerHandle } from '@hodei/worker';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

let env: TestEnv;
let config: Config;
let svc: RunningService;
let orchestrator: RunningService;
let workerManager: RunningService;
let agent: WorkerHandle;
let quick: string;
let slow: string;

const send = (base: string, method: string, path: string, body?: unknown) =>
  fetch(`${base}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
const post = async (body: unknown): Promise<Schedule> => {
  const res = await send(svc.url, 'POST', '/api/v1/schedules', body);
  expect(res.status).toBe(201);
  return res.json();
};
const pause = async (id: string) => {
  const res = await send(svc.url, 'PATCH', `/api/v1/schedules/${id}`, { enabled: false });
  expect((await res.json()).status).toBe('paused');
};
const schedule = async (id: string): Promise<Schedule> => (await fetch(`${svc.url}/api/v1/schedules/${id}`)).json();
/** Newest first. */
const runs = async (id: string): Promise<ScheduleRun[]> => (await fetch(`${svc.url}/api/v1/schedules/${id}/runs`)).json();
const execution = async (id: string): Promise<Execution> => (await fetch(`${workerManager.url}/api/v1/executions/${id}`)).json();
const job = async (command: string): Promise<string> => {
  const res = await send(orchestrator.url, 'POST', '/api/v1/jobs', { name: `cron-${command.replace(/\W/g, '-')}`, command });
  expect(res.status).toBe(201);
  return (await res.json()).id;
};

const settled = (r: ScheduleRun[]) => !r.some((x) => x.outcome === 'pending');
const firedCount = (n: number) => (r: ScheduleRun[]) => r.filter((x) => x.outcome === 'fired').length >= n;
/** A later observable event: another one-second schedule fires twice, so the firer has gone past
 *  at least one more second since this was called. */
async function twoSecondsLater() {
  const probe = await post({ job_id: quick, cron: '*/1 * * * * *', overlap_policy: 'allow' });
  await until(() => runs(probe.id), firedCount(2));
  await send(svc.url, 'DELETE', `/api/v1/schedules/${probe.id}`);
}

beforeAll(async () => {
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  config = env.config('scheduler', { urls, port: ports.scheduler });
  svc = await startScheduler(config);
  orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
  workerManager = await startWorkerManager(env.config('worker-manager', { urls, port: ports['worker-manager'] }));
  agent = await startWorker({
    natsUrl: config.natsUrl,
    natsPrefix: config.natsPrefix,
    schedulerUrl: svc.url,
    capacity: { slots: 16, cpu_cores: 16, memory_bytes: 16 * 1024 ** 3 },
    killGraceMs: 300,
    logLevel: 'silent',
  });
  await workerOnline(svc.url, agent.id, 15_000);
  quick = await job('true');
  slow = await job('sleep 30');
}, 60_000);

afterAll(async () => {
  await agent?.stop({ force: true });
  await workerManager?.stop();
  await orchestrator?.stop();
  await svc?.stop();
  await env?.cleanup();
}, 60_000);

describe('cron firing', () => {
  it('fires a */1 seconds schedule once a second, on time, runs the job each time, and stops when paused', async () => {
    const s = await post({ job_id: quick, cron: '*/1 * * * * *', overlap_policy: 'allow' });
    await until(() => runs(s.id), firedCount(3));
    await pause(s.id);
    // a firing under way when it was paused is recorded `pending` until its execute returns
    const fired = (await until(() => runs(s.id), settled)).reverse();
    expect(fired.length).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < fired.length; i++) {
      const r = fired[i]!;
      expect(r.outcome).toBe('fired');
      expect(r.scheduled_at).toMatch(/\.000Z$/);
      if (i > 0) expect(Date.parse(r.scheduled_at) - Date.parse(fired[i - 1]!.scheduled_at)).toBe(1000);
      // on time within a generous bound (bench/cron-lateness.ts measures the lateness)
      expect(Date.parse(r.fired_at!) - Date.parse(r.scheduled_at)).toBeLessThan(2000);
      expect(await until(() => execution(r.execution_id!), (e) => e.status === 'completed')).toMatchObject({ job_id: quick, exit_code: 0 });
    }
    await twoSecondsLater();
    expect(await runs(s.id)).toHaveLength(fired.length);
    expect((await schedule(s.id)).last_run_at).toBe(fired.at(-1)!.scheduled_at);
  });

  it('fires a one-shot run_at schedule once and completes it', async () => {
    const runAt = new Date(Math.ceil((Date.now() + 1200) / 1000) * 1000).toISOString();
    const s = await post({ job_id: quick, run_at: runAt });
    const after = await until(() => schedule(s.id), (x) => x.status === 'completed');
    expect(after).toMatchObject({ next_run_at: null, last_run_at: runAt });
    const r = await until(() => runs(s.id), settled);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ scheduled_at: runAt, outcome: 'fired' });
    expect((await until(() => execution(r[0]!.execution_id!), (e) => e.status === 'completed')).exit_code).toBe(0);
  });

  it('runs a schedule now with POST /run: paused or not, under its overlap_policy, its next firing unchanged', async () => {
    const s = await post({ job_id: slow, cron: '0 0 1 1 *', timezone: 'Europe/Madrid' });
    const runNow = async () => {
      const res = await send(svc.url, 'POST', `/api/v1/schedules/${s.id}/run`);
      expect(res.status).toBe(202);
      return (await res.json()) as ScheduleRun;
    };
    const first = await runNow();
    expect(first).toMatchObject({ schedule_id: s.id, outcome: 'fired', manual: true, message: null });
    await until(() => execution(first.execution_id!), (e) => e.status === 'running');
    // forbid: the run started by hand is the active run
    const second = await runNow();
    expect(second).toMatchObject({ outcome: 'skipped', execution_id: null, message: `previous run ${first.execution_id} is still active (overlap_policy forbid)` });
    await pause(s.id);
    await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { overlap_policy: 'replace' });
    const third = await runNow();
    expect(third).toMatchObject({ outcome: 'fired', message: `replaced ${first.execution_id}` });
    expect((await until(() => execution(first.execution_id!), (e) => e.status === 'cancelled')).status).toBe('cancelled');
    expect((await runs(s.id)).map((r) => r.id)).toEqual([third.id, second.id, first.id]);
    const after = await schedule(s.id);
    expect(after).toMatchObject({ status: 'paused', next_run_at: null, last_run_at: third.scheduled_at });
    await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { enabled: true });
    expect((await schedule(s.id)).next_run_at).toBe(s.next_run_at);
    await send(workerManager.url, 'POST', `/api/v1/executions/${third.execution_id}/cancel`);
    await send(svc.url, 'DELETE', `/api/v1/schedules/${s.id}`);
    expect((await send(svc.url, 'POST', `/api/v1/schedules/${s.id}/run`)).status).toBe(404);
  });

  it('forbid after a last attempt that ended starts the next run without asking worker-manager about retries', async () => {
    const s = await post({ job_id: quick, cron: '0 0 1 1 *' });
    const runNow = async () => (await (await send(svc.url, 'POST', `/api/v1/schedules/${s.id}/run`)).json()) as ScheduleRun;
    const first = await runNow();
    expect(first.outcome).toBe('fired');
    await until(() => execution(first.execution_id!), (e) => e.status === 'completed');
    const queueState = async () =>
      (await svc.ctx.db.query<{ state: string }>('SELECT state FROM queue WHERE execution_id = $1', [first.execution_id])).rows[0]?.state;
    await until(queueState, (state) => state === 'done');
    /** worker-manager's answers to GET /api/v1/executions (the list that finds an execution's retry) */
    const lists = async () => {
      const text = await (await fetch(`${workerManager.url}/metrics`)).text();
      return Number(/^hodei_http_request_duration_seconds_count\{[^}]*method="GET",route="\/api\/v1\/executions",[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const before = await lists();
    const second = await runNow();
    expect(second).toMatchObject({ outcome: 'fired', message: null });
    expect(await lists()).toBe(before);
    await until(() => execution(second.execution_id!), (e) => e.status === 'completed');
    await send(svc.url, 'DELETE', `/api/v1/schedules/${s.id}`);
  });

  it('runs asked for at the same moment start one execution under overlap_policy forbid, and one after another under replace', async () => {
    const s = await post({ job_id: slow, cron: '0 0 1 1 *' });
    const burst = async () => {
      const answers = await Promise.all(Array.from({ length: 10 }, () => send(svc.url, 'POST', `/api/v1/schedules/${s.id}/run`)));
      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(202));
      return Promise.all(answers.map((a) => a.json() as Promise<ScheduleRun>));
    };
    const forbid = await burst();
    const fired = forbid.filter((r) => r.outcome === 'fired');
    expect(fired).toHaveLength(1);
    const active = fired[0]!.execution_id;
    expect(forbid.filter((r) => r.outcome === 'skipped').map((r) => r.message)).toEqual(
      Array(9).fill(`previous run ${active} is still active (overlap_policy forbid)`),
    );
    await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { overlap_policy: 'replace' });
    const replace = await burst();
    // each cancels the one started before it: one execution is left running
    const started = replace.map((r) => r.execution_id!);
    const statuses = await until(
      () => Promise.all(started.map(async (id) => (await execution(id)).status)),
      (all) => all.filter((x) => x === 'cancelled').length === 9,
    );
    expect(statuses.filter((x) => x !== 'cancelled')).toHaveLength(1);
    expect((await execution(active!)).status).toBe('cancelled');
    for (const id of started) await send(workerManager.url, 'POST', `/api/v1/executions/${id}/cancel`);
    await send(svc.url, 'DELETE', `/api/v1/schedules/${s.id}`);
  });

  it('a run asked for on the second of a cron firing does not take that firing\'s place', async () => {
    const s = await post({ job_id: quick, cron: '*/1 * * * * *', overlap_policy: 'allow' });
    const [latest] = await until(() => runs(s.id), (r) => r.some((x) => x.outcome === 'fired'));
    // a manual firing recorded at the very second the schedule fires next
    const next = new Date(Date.parse(latest!.scheduled_at) + 3000);
    await svc.ctx.db.query(`INSERT INTO schedule_runs (id, schedule_id, scheduled_at, outcome, manual) VALUES (gen_random_uuid(), $1, $2, 'fired', true)`, [s.id, next]);
    const both = await until(() => runs(s.id), (r) => r.filter((x) => x.scheduled_at === next.toISOString() && x.outcome === 'fired').length === 2);
    await pause(s.id);
    expect(both.filter((x) => x.scheduled_at === next.toISOString()).map((x) => x.manual).sort()).toEqual([false, true]);
  });

  it('forbid skips while the previous run is active; replace cancels it', async () => {
    const s = await post({ job_id: slow, cron: '*/1 * * * * *' });
    const r = (await until(() => runs(s.id), (x) => settled(x) && x.length >= 2)).reverse();
    const first = r[0]!;
    expect(first.outcome).toBe('fired');
    for (const skipped of r.slice(1)) {
      expect(skipped.outcome).toBe('skipped');
      expect(skipped.message).toContain(first.execution_id!);
    }
    await until(() => execution(first.execution_id!), (e) => e.status === 'running');

    // the first run ends (cancelled here): the next firing runs again
    expect((await send(workerManager.url, 'POST', `/api/v1/executions/${first.execution_id}/cancel`)).status).toBe(202);
    const isAgain = (x: ScheduleRun) => x.outcome === 'fired' && x.execution_id !== first.execution_id;
    const again = (await until(() => runs(s.id), (x) => x.some(isAgain))).find(isAgain)!;
    expect((await execution(first.execution_id!)).status).toBe('cancelled');
    // and the firings after it are skipped: it is still active
    const skippedAfter = (x: ScheduleRun[]) => x.filter((y) => y.scheduled_at > again.scheduled_at && y.outcome !== 'pending');
    const later = skippedAfter(await until(() => runs(s.id), (x) => skippedAfter(x).length >= 1));
    for (const x of later) expect(x).toMatchObject({ outcome: 'skipped', message: expect.stringContaining(again.execution_id!) });

    const patched = await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { overlap_policy: 'replace' });
    expect(patched.status).toBe(200);
    const since = new Date().toISOString();
    // the first firing due after the PATCH answered reads the new policy
    const afterPatch = (x: ScheduleRun[]) => x.filter((y) => y.scheduled_at > since && y.outcome !== 'pending').reverse();
    const replacing = afterPatch(await until(() => runs(s.id), (x) => afterPatch(x).length >= 1))[0]!;
    await send(svc.url, 'DELETE', `/api/v1/schedules/${s.id}`);
    expect(replacing.outcome).toBe('fired');
    expect(replacing.message).toBe(`replaced ${again.execution_id}`);
    expect((await until(() => execution(again.execution_id!), (e) => e.status === 'cancelled')).status).toBe('cancelled');
    await send(workerManager.url, 'POST', `/api/v1/executions/${replacing.execution_id}/cancel`);
  });

  it('forbid counts the retries of the previous run as that run: no firing while its next attempt waits or runs', async () => {
    const marker = join(tmpdir(), `hodei-cron-retry-${process.pid}-${Date.now()}`);
    onTestFinished(() => rmSync(marker, { recursive: true, force: true }));
    const res = await send(orchestrator.url, 'POST', '/api/v1/jobs', {
      name: 'cron-retried',
      command: `if mkdir ${marker} 2>/dev/null; then exit 1; fi; sleep 30`,
      max_retries: 2,
      retry_backoff_seconds: 1,
    });
    const flaky = (await res.json()).id as string;
    const s = await post({ job_id: flaky, cron: '*/1 * * * * *' });
    const first = (await until(() => runs(s.id), (x) => x.some((r) => r.outcome === 'fired'))).find((r) => r.outcome === 'fired')!;
    const list = async () => (await (await fetch(`${workerManager.url}/api/v1/executions?job_id=${flaky}`)).json()) as Execution[];
    const retry = (await until(list, (x) => x.some((e) => e.attempt === 2 && e.status === 'running'), 15_000)).find((e) => e.attempt === 2)!;
    expect(retry.retry_of).toBe(first.execution_id);
    const since = new Date().toISOString();
    const later = (x: ScheduleRun[]) => x.filter((r) => r.scheduled_at > since && r.outcome !== 'pending');
    await until(() => runs(s.id), (x) => later(x).length >= 2);
    await pause(s.id);
    const all = await until(() => runs(s.id), settled);
    await send(workerManager.url, 'POST', `/api/v1/executions/${retry.id}/cancel`);
    expect(all.filter((r) => r.outcome === 'fired')).toEqual([first]);
    for (const r of later(all)) expect(r).toMatchObject({ outcome: 'skipped', message: expect.stringContaining(retry.id) });
    expect((await list()).map((e) => e.attempt).sort()).toEqual([1, 2]);
  });

  it('forbid and replace also hold for a pipeline schedule: its previous run is asked of the orchestrator', async () => {
    const created = await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 'cron-overlap', jobs: [{ name: 'slow', command: 'sleep 30' }] });
    expect(created.status).toBe(201);
    const pipeline = (await created.json()).id as string;
    const run = async (id: string) => (await fetch(`${orchestrator.url}/api/v1/pipeline-runs/${id}`)).json() as Promise<{ status: string }>;
    const s = await post({ pipeline_id: pipeline, cron: '*/1 * * * * *' });
    const r = (await until(() => runs(s.id), (x) => settled(x) && x.length >= 3)).reverse();
    const first = r[0]!;
    expect(first).toMatchObject({ outcome: 'fired', execution_id: null, message: `pipeline run ${first.pipeline_run_id}` });
    for (const skipped of r.slice(1)) {
      expect(skipped).toMatchObject({ outcome: 'skipped', pipeline_run_id: null, message: expect.stringContaining(first.pipeline_run_id!) });
    }
    const list = await fetch(`${orchestrator.url}/api/v1/pipelines/${pipeline}/runs`);
    expect(list.headers.get('x-total-count')).toBe('1');

    const since = new Date().toISOString();
    expect((await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { overlap_policy: 'replace' })).status).toBe(200);
    const afterPatch = (x: ScheduleRun[]) => x.filter((y) => y.scheduled_at > since && y.outcome !== 'pending').reverse();
    const replacing = afterPatch(await until(() => runs(s.id), (x) => afterPatch(x).length >= 1))[0]!;
    await send(svc.url, 'DELETE', `/api/v1/schedules/${s.id}`);
    expect(replacing).toMatchObject({ outcome: 'fired', message: `pipeline run ${replacing.pipeline_run_id}; replaced ${first.pipeline_run_id}` });
    expect((await until(() => run(first.pipeline_run_id!), (x) => x.status !== 'running')).status).toBe('cancelled');
    await send(orchestrator.url, 'POST', `/api/v1/pipeline-runs/${replacing.pipeline_run_id}/cancel`);
  });

  it('pauses a schedule whose job or pipeline was deleted, after the one firing that found it gone', async () => {
    const own = await job('echo own');
    const created = await send(orchestrator.url, 'POST', '/api/v1/pipelines', { name: 'cron-deleted', jobs: [{ name: 'one', command: 'true' }] });
    const pipeline = (await created.json()).id as string;
    const onJob = await post({ job_id: own, cron: '*/1 * * * * *', overlap_policy: 'allow' });
    const onPipeline = await post({ pipeline_id: pipeline, cron: '*/1 * * * * *', overlap_policy: 'allow' });
    for (const s of [onJob, onPipeline]) await until(() => runs(s.id), firedCount(1));
    for (const s of [onJob, onPipeline]) await pause(s.id);
    await until(() => runs(onJob.id), settled);
    const ran = (await runs(onJob.id)).map((r) => r.execution_id!);
    await Promise.all(ran.map((id) => until(() => execution(id), (e) => e.status === 'completed')));
    const pipelineRuns = (await runs(onPipeline.id)).map((r) => r.pipeline_run_id!);
    const runStatus = async (id: string) => ((await (await fetch(`${orchestrator.url}/api/v1/pipeline-runs/${id}`)).json()) as { status: string }).status;
    await Promise.all(pipelineRuns.map((id) => until(() => runStatus(id), (st) => st === 'completed')));
    expect((await send(orchestrator.url, 'DELETE', `/api/v1/jobs/${own}`)).status).toBe(204);
    expect((await send(orchestrator.url, 'DELETE', `/api/v1/pipelines/${pipeline}`)).status).toBe(204);

    for (const [s, what] of [[onJob, `job ${own}`], [onPipeline, `pipeline ${pipeline}`]] as const) {
      const before = (await runs(s.id)).length;
      expect((await send(svc.url, 'PATCH', `/api/v1/schedules/${s.id}`, { enabled: true })).status).toBe(200);
      const paused = await until(() => schedule(s.id), (x) => x.status === 'paused', 15_000);
      expect(paused).toMatchObject({ enabled: false, next_run_at: null });
      const r = await until(() => runs(s.id), settled);
      expect(r).toHaveLength(before + 1);
      expect(r[0]).toMatchObject({ outcome: 'failed', message: `${what} not found; schedule paused` });
    }
    await twoSecondsLater();
    for (const s of [onJob, onPipeline]) expect((await runs(s.id)).filter((r) => r.outcome === 'failed')).toHaveLength(1);
  });

  it('after downtime, run_once catches up once and skip not at all, recording the firing it skipped', async () => {
    const once = await post({ job_id: quick, cron: '0 0 1 1 *', enabled: false, misfire_policy: 'run_once' });
    const skip = await post({ job_id: quick, cron: '0 0 1 1 *', enabled: false, misfire_policy: 'skip' });
    const oneShot = await post({ job_id: quick, run_at: new Date(Date.now() + 3600_000).toISOString(), enabled: false, misfire_policy: 'skip' });
    // as if the scheduler had been down for three firings of a one-second schedule
    const missed = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000);
    await svc.ctx.db.query(`UPDATE schedules SET enabled = true, next_run_at = $2 WHERE id = ANY($1)`, [[once.id, skip.id, oneShot.id], missed]);
    // both handled: each moved on to its next firing, next New Year
    for (const id of [once.id, skip.id]) {
      const s = await until(() => schedule(id), (x) => x.next_run_at !== null && Date.parse(x.next_run_at) > Date.now());
      expect(s.next_run_at).toMatch(/-01-01T00:00:00\.000Z$/);
    }
    const o = await until(() => runs(once.id), settled);
    expect(o).toHaveLength(1);
    expect(o[0]).toMatchObject({ scheduled_at: missed.toISOString(), outcome: 'fired' });
    // a one-shot missed is over without a run: its firing says so
    expect(await until(() => schedule(oneShot.id), (x) => x.status === 'completed')).toMatchObject({ next_run_at: null, last_run_at: null });
    for (const id of [skip.id, oneShot.id]) {
      expect(await runs(id)).toEqual([
        expect.objectContaining({
          scheduled_at: missed.toISOString(),
          fired_at: null,
          execution_id: null,
          outcome: 'skipped',
          message: `missed: no scheduler was running at ${missed.toISOString()} (misfire_policy skip)`,
        }),
      ]);
    }
    expect((await schedule(skip.id)).last_run_at).toBeNull();
  });

  it('a paused one-shot resumed after its run_at: skip records it missed because it was paused, run_once fires it', async () => {
    const at = new Date(Date.now() + 3600_000).toISOString();
    const skip = await post({ job_id: quick, run_at: at, enabled: false, misfire_policy: 'skip' });
    const once = await post({ job_id: quick, run_at: at, enabled: false, misfire_policy: 'run_once' });
    // its time passes while it is paused
    const missed = new Date(Math.floor(Date.now() / 1000) * 1000 - 3000);
    await svc.ctx.db.query('UPDATE schedules SET run_at = $2 WHERE id = ANY($1)', [[skip.id, once.id], missed]);
    for (const id of [skip.id, once.id]) {
      const res = await send(svc.url, 'PATCH', `/api/v1/schedules/${id}`, { enabled: true });
      expect(res.status).toBe(200);
    }
    expect(await until(() => schedule(skip.id), (x) => x.status === 'completed')).toMatchObject({ next_run_at: null, last_run_at: null });
    expect(await runs(skip.id)).toEqual([
      expect.objectContaining({
        scheduled_at: missed.toISOString(),
        execution_id: null,
        outcome: 'skipped',
        message: `missed: the schedule was paused at ${missed.toISOString()} (misfire_policy skip)`,
      }),
    ]);
    // the two are fired apart: the skip one being over says nothing of this one
    const o = await until(() => runs(once.id), (r) => r.length > 0 && settled(r));
    expect(o).toEqual([expect.objectContaining({ scheduled_at: missed.toISOString(), outcome: 'fired' })]);
  });

  it('two scheduler replicas on one database fire each second once', async () => {
    const second = await startScheduler({ ...config, port: 0 });
    try {
      const own = await job('true');
      const s = await post({ job_id: own, cron: '*/1 * * * * *', overlap_policy: 'allow' });
      await until(() => runs(s.id), firedCount(3));
      await pause(s.id);
      const r = await until(() => runs(s.id), settled);
      expect(r.every((x) => x.outcome === 'fired')).toBe(true);
      // one execute per firing, not one per replica: the job's executions are exactly the runs'
      const list = await fetch(`${workerManager.url}/api/v1/executions?job_id=${own}&limit=1000`);
      expect(list.headers.get('x-total-count')).toBe(String(r.length));
      expect(new Set(((await list.json()) as Execution[]).map((e) => e.id))).toEqual(new Set(r.map((x) => x.execution_id)));
    } finally {
      await second.stop();
    }
  });
});
