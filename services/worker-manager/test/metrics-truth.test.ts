// What an operator reads from /metrics against what happened, on real workers running real jobs:
// executions by final status and their durations (each once: lost to a kill -9, cancelled by a
// force-stop, cancelled while queued, retried), queue depth, worker slots used, log lines ingested,
// open event streams (clients gone abruptly), and what a worker-manager restart does to them.
import { connect, type Socket } from 'node:net';
import { createTestEnv, workerOnline, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import { FINAL_STATUSES, type Execution } from '@hodei/types';
import { startWorker, type WorkerHandle } from '@hodei/worker';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startWorkerManager } from '../src/service.js';
import { call, consumedUpTo, executeOn, finishedOn, getExecutionOn, publishStatus, until } from './helpers.js';
import { startSchedulerAndManager } from './manager-stack.js';

let env: TestEnv;
let sched: RunningService;
let wm: RunningService;
let wmConfig: Config;
let agent: WorkerHandle | undefined;

beforeAll(async () => {
  env = createTestEnv();
  ({ sched, wm, wmConfig } = await startSchedulerAndManager(env));
}, 120_000);

afterAll(async () => {
  await agent?.stop({ force: true });
  await wm?.stop();
  await sched?.stop();
  await env?.cleanup();
}, 60_000);

/** The sum of the samples of `name` whose labels include `labels` (0 when there is none). */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(/^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/gm)) {
    if (m[1] === name && Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

type Counts = Record<string, { finished: number; observed: number; seconds: number }>;

async function byStatus(): Promise<Counts> {
  const out: Counts = {};
  for (const status of FINAL_STATUSES) {
    out[status] = {
      finished: await metric(wm.url, 'hodei_executions_finished_total', { status }),
      observed: await metric(wm.url, 'hodei_execution_duration_seconds_count', { status }),
      seconds: await metric(wm.url, 'hodei_execution_duration_seconds_sum', { status }),
    };
  }
  return out;
}

const since = (before: Counts, after: Counts) =>
  Object.fromEntries(FINAL_STATUSES.map((s) => [s, { finished: after[s]!.finished - before[s]!.finished, observed: after[s]!.observed - before[s]!.observed, seconds: after[s]!.seconds - before[s]!.seconds }]));

async function spawnWorker(pool: string, slots: number): Promise<{ id: string; pid: number }> {
  const res = await call(wm.url, 'POST', '/api/v1/workers', { type: 'shell', labels: { pool }, capacity: { slots, cpu_cores: slots, memory_bytes: 2 ** 30 } });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number };
  await workerOnline(sched.url, w.id, 15_000);
  return w;
}

const running = (ids: string[]) => until(async () => (await Promise.all(ids.map((id) => getExecutionOn(wm.url, id)))).every((e) => e.status === 'running'), 15_000, `${ids.length} running`);

const slotsUsed = (worker: string) => metric(sched.url, 'hodei_worker_slots', { worker, state: 'used' });

/** An event stream opened on a raw socket, which the test can drop without a clean close. */
function rawStream(path: string): Promise<Socket & { text: () => string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const s = connect(Number(new URL(wm.url).port), '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${new URL(wm.url).host}\r\nAccept: text/event-stream\r\n\r\n`));
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n\r\n')) resolve(Object.assign(s, { text: () => text }));
    });
  });
}

it('counts each execution once by its final status, and observes the duration it recorded: failed, retried, timed out, cancelled running and queued, lost to a kill -9, cancelled by a force-stop', async () => {
  const before = await byStatus();
  const pool = { pool: 'status' };
  const a = await spawnWorker('status', 3);
  const ok = await executeOn(wm.url, { command: 'echo ok', labels: pool });
  const failed = await executeOn(wm.url, { command: 'exit 3', labels: pool });
  const retried = await executeOn(wm.url, { command: 'exit 1', max_retries: 1, retry_backoff_seconds: 0, labels: pool });
  const timedOut = await executeOn(wm.url, { command: 'sleep 30', timeout_seconds: 1, labels: pool });
  const cancelled = await executeOn(wm.url, { command: 'sleep 30', labels: pool });
  await running([cancelled.id]);
  expect((await call(wm.url, 'POST', `/api/v1/executions/${cancelled.id}/cancel`)).status).toBe(202);
  for (const e of [ok, failed, retried, timedOut, cancelled]) await finishedOn(wm.url, e.id, 20_000);
  const retry = await until(async () => {
    const { rows } = await wm.ctx.db.query<{ id: string }>(`SELECT id FROM executions WHERE retry_of = $1 AND status = 'failed'`, [retried.id]);
    return rows[0];
  }, 20_000, 'the retry to fail');

  // every slot busy, one more waits and is cancelled there; then the worker is killed
  const lost = await Promise.all([1, 2, 3].map(() => executeOn(wm.url, { command: 'sleep 30', labels: pool })));
  await running(lost.map((e) => e.id));
  expect(await slotsUsed(a.id)).toBe(3);
  const queued = await executeOn(wm.url, { command: 'echo never', labels: pool });
  await until(async () => (await getExecutionOn(wm.url, queued.id)).waiting, 10_000, 'a reason to wait');
  expect((await call(wm.url, 'POST', `/api/v1/executions/${queued.id}/cancel`)).status).toBe(202);
  process.kill(a.pid, 'SIGKILL');
  for (const e of lost) expect((await finishedOn(wm.url, e.id, 15_000)).status).toBe('lost');
  await until(async () => (await slotsUsed(a.id)) === 0, 5000, 'the killed worker\'s slots to be free');

  const b = await spawnWorker('status', 2);
  const forced = await Promise.all([1, 2].map(() => executeOn(wm.url, { command: 'sleep 30', labels: pool })));
  await running(forced.map((e) => e.id));
  expect(await slotsUsed(b.id)).toBe(2);
  expect((await call(wm.url, 'DELETE', `/api/v1/workers/${b.id}?force=true`)).status).toBe(200);
  for (const e of forced) expect((await finishedOn(wm.url, e.id, 15_000)).status).toBe('cancelled');
  await until(async () => (await slotsUsed(b.id)) === 0, 5000, 'the force-stopped worker\'s slots to be free');

  const ids = [ok, failed, retried, retry, timedOut, cancelled, ...lost, queued, ...forced].map((e) => e.id);
  const { rows } = await wm.ctx.db.query<{ status: string; n: number; timed: number; seconds: number }>(
    `SELECT status, count(*)::int AS n, count(duration_ms)::int AS timed, coalesce(sum(duration_ms), 0)::float8 / 1000 AS seconds
     FROM executions WHERE id = ANY($1::uuid[]) GROUP BY status`,
    [ids],
  );
  const recorded = Object.fromEntries(rows.map((r) => [r.status, r]));
  expect(Object.fromEntries(rows.map((r) => [r.status, r.n]))).toEqual({ completed: 1, failed: 3, timed_out: 1, cancelled: 4, lost: 3 });
  await new Promise((r) => setTimeout(r, 500)); // a second count would come with the redelivery or late status that causes it
  const counted = since(before, await byStatus());
  for (const status of FINAL_STATUSES) {
    expect(counted[status]!.finished, status).toBe(recorded[status]?.n ?? 0);
    // the execution cancelled while queued never started: counted, no duration
    expect(counted[status]!.observed, status).toBe(recorded[status]?.timed ?? 0);
    expect(counted[status]!.seconds, status).toBeCloseTo(recorded[status]?.seconds ?? 0, 6);
  }
}, 120_000);

it('queue depth is the executions waiting for a worker: down by one for a cancel while queued, to 0 once placed', async () => {
  const w = await spawnWorker('depth', 1);
  const holder = await executeOn(wm.url, { command: 'sleep 1.5', labels: { pool: 'depth' } });
  await running([holder.id]);
  const waiting = await Promise.all([1, 2, 3].map(() => executeOn(wm.url, { command: 'true', labels: { pool: 'depth' } })));
  await until(async () => (await metric(sched.url, 'hodei_queue_depth')) === 3, 5000, 'a depth of 3');
  expect(await slotsUsed(w.id)).toBe(1);
  expect((await call(wm.url, 'POST', `/api/v1/executions/${waiting[2]!.id}/cancel`)).status).toBe(202);
  await until(async () => (await metric(sched.url, 'hodei_queue_depth')) === 2, 5000, 'a depth of 2 after the cancel');
  for (const e of [holder, waiting[0]!, waiting[1]!]) expect((await finishedOn(wm.url, e.id, 15_000)).status).toBe('completed');
  expect(await metric(sched.url, 'hodei_queue_depth')).toBe(0);
  await until(async () => (await slotsUsed(w.id)) === 0, 5000, 'no slot used');
}, 60_000);

it('log lines ingested are the lines stored, both streams', async () => {
  const before = await metric(wm.url, 'hodei_log_lines_ingested_total');
  const e = await executeOn(wm.url, { command: 'seq 1 3000; seq 1 1000 >&2', labels: { pool: 'depth' } });
  const done = await finishedOn(wm.url, e.id, 30_000);
  expect(done.log_lines).toBe(4000);
  expect((await metric(wm.url, 'hodei_log_lines_ingested_total')) - before).toBe(4000);
}, 60_000);

it('open event streams: one less for each client gone abruptly (destroyed, reset), none left of an execution that completed', async () => {
  const open = () => metric(wm.url, 'hodei_sse_subscribers');
  const before = await open();
  const e = await executeOn(wm.url, { command: 'for i in 1 2 3 4 5 6; do echo $i; sleep 0.3; done', labels: { pool: 'depth' } });
  const destroyed = await rawStream(`/api/v1/executions/${e.id}/logs/stream`);
  const reset = await rawStream(`/api/v1/executions/${e.id}/events/stream`);
  const follower = await rawStream(`/api/v1/executions/${e.id}/logs/stream`);
  const dashboard = await rawStream('/api/v1/events/stream');
  expect(await open()).toBe(before + 4);
  destroyed.destroy();
  reset.resetAndDestroy();
  await until(async () => (await open()) === before + 2, 5000, 'the two dropped streams to be gone');
  await finishedOn(wm.url, e.id, 15_000);
  await until(async () => follower.text().includes('event: completed'), 5000, 'completed');
  await until(async () => (await open()) === before + 1, 5000, 'the completed execution\'s stream to close');
  dashboard.resetAndDestroy();
  await until(async () => (await open()) === before, 5000, 'the dashboard stream to be gone');
  follower.destroy();
}, 60_000);

it('across a worker-manager restart: counting starts again at 0, an execution that ended while it was down is counted once by the next one, and a status delivered again is not counted again', async () => {
  agent = await startWorker({ natsUrl: wmConfig.natsUrl, natsPrefix: env.natsPrefix, schedulerUrl: sched.url, labels: { pool: 'restart' }, logLevel: 'silent' });
  await workerOnline(sched.url, agent.id, 15_000);
  const counted = await executeOn(wm.url, { command: 'true', labels: { pool: 'restart' } });
  const countedRow = await finishedOn(wm.url, counted.id, 15_000);
  const whileDown = await executeOn(wm.url, { command: 'sleep 1', labels: { pool: 'restart' } });
  await running([whileDown.id]);
  await wm.stop();
  await until(async () => agent!.running().length === 0, 10_000, 'the job to end while worker-manager is down');
  wm = await startWorkerManager(wmConfig);
  expect(await metric(wm.url, 'hodei_sse_subscribers')).toBe(0);
  const done: Execution = await finishedOn(wm.url, whileDown.id, 15_000);
  expect(done.status).toBe('completed');
  // the agent's final status again, as a redelivery brings it, for both executions
  await publishStatus(wm.ctx.bus, { execution_id: counted.id, worker_id: agent.id, status: 'completed', exit_code: 0, duration_ms: countedRow.duration_ms ?? 1 });
  const seq = await publishStatus(wm.ctx.bus, { execution_id: whileDown.id, worker_id: agent.id, status: 'completed', exit_code: 0, duration_ms: done.duration_ms ?? 1 });
  await consumedUpTo(wm.ctx.bus, 'status', seq);
  const now = await byStatus();
  expect(Object.fromEntries(FINAL_STATUSES.map((s) => [s, now[s]!.finished]))).toEqual({ completed: 1, failed: 0, timed_out: 0, cancelled: 0, lost: 0 });
  expect(now.completed!.observed).toBe(1);
  expect(now.completed!.seconds).toBeCloseTo(done.duration_ms! / 1000, 6);
}, 60_000);
