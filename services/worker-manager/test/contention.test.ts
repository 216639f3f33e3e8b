// Placement under contention on the real path: scheduler + worker-manager, real worker agents of
// different sizes and labels running real shell commands; what a user reads in `waiting`.
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import type { Execution } from '@hodei/types';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../src/service.js';
import { call, executeOn, finishedOn, getExecutionOn, until } from './helpers.js';

let env: TestEnv;
let sched: RunningService;
let wm: RunningService;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** How long a large execution waiting for room holds every worker it fits (the scheduler's HOLD_ALL_MS). */
const HOLD_ALL_MS = 10_000;
const execute = (body: Record<string, unknown>) => executeOn(wm.url, { max_retries: 0, ...body });
const getExecution = (id: string) => getExecutionOn(wm.url, id);
/** The execution once it ended; when it does not, the error says where it stands in worker-manager and in the scheduler's queue. */
const finished = (id: string, ms = 30_000) =>
  finishedOn(wm.url, id, ms).catch(async (err: unknown) => {
    const { status, worker_id, waiting } = await getExecution(id);
    const queue = (await sched.ctx.db.query('SELECT state, worker_id, waiting_reason FROM queue WHERE execution_id = $1', [id])).rows[0];
    throw new Error(`${(err as Error).message}: ${JSON.stringify({ status, worker_id, waiting, queue })}`);
  });
const startedAt = (e: Execution) => Date.parse(e.started_at!);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The execution's `waiting` once it equals `reason`; it must stay queued meanwhile. */
const waitsWith = (id: string, reason: string, ms = 10_000) =>
  until(async () => {
    const e = await getExecution(id);
    expect(e.status, `${id} still queued`).toBe('queued');
    return e.waiting === reason;
  }, ms, `${id} to wait with '${reason}'`).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}; it says '${(await getExecution(id)).waiting}'`);
  });
const running = (id: string) => until(async () => (await getExecution(id)).status === 'running', 10_000, `${id} to run`);

/** Each test's workers; force-stopped after it, so the next test's reasons count only its own. */
const workers: string[] = [];
type Capacity = { slots: number; cpu_cores: number; memory_bytes: number };
async function startWorker(labels: Record<string, string>, capacity: Capacity) {
  const res = await call(wm.url, 'POST', '/api/v1/workers', { type: 'shell', labels, capacity });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number };
  workers.push(w.id);
  await workerOnline(sched.url, w.id, 15_000);
  return w;
}
const stopWorker = async (id: string, force = false) => {
  const res = await call(wm.url, 'DELETE', `/api/v1/workers/${id}${force ? '?force=true' : ''}`);
  expect(res.status).toBeLessThan(300);
};

beforeAll(async () => {
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, killGraceMs: 1000, heartbeatIntervalMs: 300, heartbeatTimeoutMs: 3000 };
  sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
}, 120_000);

afterEach(async () => {
  for (const id of workers.splice(0)) await call(wm.url, 'DELETE', `/api/v1/workers/${id}?force=true`);
  await until(async () => {
    const list = (await (await call(sched.url, 'GET', '/api/v1/workers?status=online')).json()) as unknown[];
    return list.length === 0;
  }, 15_000, 'no worker online');
}, 30_000);

afterAll(async () => {
  await wm?.stop();
  await sched?.stop();
  await env?.cleanup();
}, 60_000);

it('an execution no worker can ever take waits naming the resource that is short; a worker it fits takes it at once, and the reason follows the workers', async () => {
  await startWorker({ area: 'fit' }, { slots: 2, cpu_cores: 1, memory_bytes: 512 * MiB });
  const mid = await startWorker({ area: 'fit', disk: 'ssd' }, { slots: 1, cpu_cores: 4, memory_bytes: 1 * GiB });
  const cpu = await execute({ command: 'echo cpu', labels: { area: 'fit' }, resources: { cpu_cores: 8, memory_bytes: 64 * MiB } });
  const mem = await execute({ command: 'echo mem', labels: { area: 'fit' }, resources: { cpu_cores: 0.5, memory_bytes: 2 * GiB } });
  const both = await execute({ command: 'echo both', labels: { area: 'fit' }, resources: { cpu_cores: 6, memory_bytes: 3 * GiB } });
  const ssd = await execute({ command: 'echo ssd', labels: { area: 'fit', disk: 'ssd' }, resources: { cpu_cores: 0.5, memory_bytes: 1536 * MiB } });
  const lbl = await execute({ command: 'echo lbl', labels: { area: 'fit', pool: 'gpu' } });
  const ok = await execute({ command: 'echo ok', labels: { area: 'fit' }, resources: { cpu_cores: 2, memory_bytes: 768 * MiB } });
  expect(await finished(ok.id)).toMatchObject({ status: 'completed', worker_id: mid.id });
  await waitsWith(cpu.id, 'no worker large enough: needs 8 cpu_cores, the workers with label area=fit have at most 4');
  await waitsWith(mem.id, 'no worker large enough: needs 2 GiB memory, the workers with label area=fit have at most 1 GiB');
  await waitsWith(both.id, 'no worker large enough: needs 6 cpu_cores and 3 GiB memory, the workers with label area=fit have at most 4 cpu_cores and 1 GiB');
  await waitsWith(ssd.id, 'no worker large enough: needs 1536 MiB memory, the workers with labels area=fit, disk=ssd have at most 1 GiB');
  await waitsWith(lbl.id, 'no worker with label pool=gpu');

  // a worker with room enough for cpu arrives: it runs at once; mem, then, waits for that worker
  const big = await startWorker({ area: 'fit' }, { slots: 1, cpu_cores: 8, memory_bytes: 2 * GiB });
  const online = Date.now();
  const cpuDone = await finished(cpu.id);
  expect(cpuDone).toMatchObject({ status: 'completed', worker_id: big.id });
  expect(startedAt(cpuDone) - online).toBeLessThan(2000);
  expect(await finished(mem.id)).toMatchObject({ status: 'completed', worker_id: big.id });
  await waitsWith(both.id, 'no worker large enough: needs 3 GiB memory, the workers with label area=fit have at most 2 GiB');

  // it goes: what only it fitted says so again
  const held = await execute({ command: 'sleep 5', labels: { area: 'fit' }, resources: { cpu_cores: 8, memory_bytes: 64 * MiB } });
  await running(held.id);
  const next = await execute({ command: 'echo next', labels: { area: 'fit' }, resources: { cpu_cores: 8, memory_bytes: 64 * MiB } });
  await waitsWith(next.id, 'all workers with label area=fit that are large enough are busy (needs 1 slot, 8 cpu_cores, 64 MiB memory)');
  await stopWorker(big.id);
  await waitsWith(next.id, 'no worker large enough: needs 8 cpu_cores, the workers with label area=fit have at most 4');
  expect((await finished(held.id)).status).toBe('completed');
}, 90_000);

it('a high-priority execution waiting for a busy labelled worker neither blocks low ones that run elsewhere nor is overtaken by them', async () => {
  const gpu = await startWorker({ area: 'hol', pool: 'gpu' }, { slots: 1, cpu_cores: 2, memory_bytes: GiB });
  const cpu = await startWorker({ area: 'hol' }, { slots: 1, cpu_cores: 2, memory_bytes: GiB });
  const first = await execute({ command: 'sleep 3', labels: { area: 'hol', pool: 'gpu' } });
  await running(first.id);
  const high = await execute({ command: 'true', priority: 9, labels: { area: 'hol', pool: 'gpu' } });
  const lows: Execution[] = [];
  for (let i = 0; i < 3; i++) lows.push(await execute({ command: 'sleep 0.2', priority: 1, labels: { area: 'hol' } }));
  await waitsWith(high.id, 'all workers with labels area=hol, pool=gpu are busy (needs 1 slot, 0.1 cpu_cores, 64 MiB memory)');
  const lowsDone = await Promise.all(lows.map((l) => finished(l.id)));
  const firstDone = await finished(first.id);
  const highDone = await finished(high.id);
  // the low ones ran on the free worker while the gpu one was busy, none on the gpu worker
  for (const l of lowsDone) expect(l).toMatchObject({ status: 'completed', worker_id: cpu.id });
  expect(Math.max(...lowsDone.map(startedAt))).toBeLessThan(Date.parse(firstDone.finished_at!));
  // the high one took the gpu worker as soon as it was free
  expect(highDone).toMatchObject({ status: 'completed', worker_id: gpu.id });
  expect(startedAt(highDone) - Date.parse(firstDone.finished_at!)).toBeLessThan(1500);
}, 60_000);

it('a large execution is not kept waiting behind a long job while another worker it fits cycles through small ones', async () => {
  // a has more slots, so it looks the emptier one; but its long job keeps the cpu the large one needs
  await startWorker({ area: 'long', host: 'a' }, { slots: 8, cpu_cores: 2, memory_bytes: GiB });
  const b = await startWorker({ area: 'long', host: 'b' }, { slots: 4, cpu_cores: 2, memory_bytes: GiB });
  const long = await execute({ command: 'sleep 25', labels: { area: 'long', host: 'a' }, resources: { cpu_cores: 1.5, memory_bytes: 64 * MiB } });
  await running(long.id);
  let stop = false;
  // seven clients, each submitting a small job again as soon as its last one ended: the workers stay full
  const clients = Array.from({ length: 7 }, async () => {
    while (!stop) {
      const e = await execute({ command: 'sleep 0.$((RANDOM % 6 + 3))', labels: { area: 'long' }, resources: { cpu_cores: 0.5, memory_bytes: 64 * MiB } });
      expect((await finished(e.id)).status).toBe('completed');
    }
  });
  await sleep(2000);
  const t0 = Date.now();
  const big = await execute({ command: 'true', labels: { area: 'long' }, resources: { cpu_cores: 2, memory_bytes: 64 * MiB } });
  try {
    const done = await finished(big.id, 40_000);
    expect(done).toMatchObject({ status: 'completed', worker_id: b.id });
    // a small job runs at most 0.8 s: b has room for it within that, the long job ends in 25 s
    expect(startedAt(done) - t0).toBeLessThan(5000);
  } finally {
    stop = true;
    await Promise.all(clients);
  }
  await stopWorker(b.id);
}, 90_000);

it('a worker killed -9 or drained while executions wait for it: they say so, and the next worker runs them promptly in priority order', async () => {
  await startWorker({ area: 'bystander' }, { slots: 1, cpu_cores: 1, memory_bytes: GiB });
  const doomed = await startWorker({ area: 'gone' }, { slots: 1, cpu_cores: 2, memory_bytes: GiB });
  const lost = await execute({ command: 'sleep 30', labels: { area: 'gone' } });
  await running(lost.id);
  const queued: { priority: number; e: Execution }[] = [];
  for (const priority of [1, 5, 9, 5, 1, 9]) queued.push({ priority, e: await execute({ command: 'sleep 0.5', priority, labels: { area: 'gone' } }) });
  const busy = 'all workers with label area=gone are busy (needs 1 slot, 0.1 cpu_cores, 64 MiB memory)';
  for (const q of queued) await waitsWith(q.e.id, busy);

  process.kill(doomed.pid, 'SIGKILL');
  for (const q of queued) await waitsWith(q.e.id, 'no worker with label area=gone', 3000);
  expect(await finished(lost.id)).toMatchObject({ status: 'lost', worker_id: doomed.id });

  // a worker that takes one, then drains: the rest wait again
  const drained = await startWorker({ area: 'gone' }, { slots: 1, cpu_cores: 2, memory_bytes: GiB });
  const head = queued[2]!.e;
  await stopWorker(drained.id);
  expect(await finished(head.id)).toMatchObject({ status: 'completed', worker_id: drained.id });
  const rest = queued.filter((q) => q.e.id !== head.id);
  for (const q of rest) await waitsWith(q.e.id, 'no worker with label area=gone', 5000);

  const fresh = await startWorker({ area: 'gone' }, { slots: 1, cpu_cores: 2, memory_bytes: GiB });
  const online = Date.now();
  const done = await Promise.all(rest.map((q) => finished(q.e.id)));
  for (const d of done) expect(d).toMatchObject({ status: 'completed', worker_id: fresh.id });
  const order = rest.map((q, i) => ({ priority: q.priority, at: startedAt(done[i]!), i })).sort((x, y) => x.at - y.at);
  expect(order.map((o) => o.priority)).toEqual([9, 5, 5, 1, 1]);
  expect(order.map((o) => o.i)).toEqual([4, 1, 2, 0, 3]); // oldest first within a priority
  expect(order[0]!.at - online).toBeLessThan(2000);
}, 90_000);

/**
 * 40 executions of `command` from 4 clients, 50 ms apart each (some come after what the test does
 * next); resolves once a third of them is submitted, `submit` once all are.
 */
async function burst(command: string, labels: Record<string, string>) {
  const submitted: { id: string; at: number }[] = [];
  const submit = Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 10; i++) {
        const { id } = await execute({ command, labels });
        submitted.push({ id, at: Date.now() });
        await sleep(50);
      }
    }),
  );
  await until(async () => submitted.length >= 12 || undefined, 10_000, 'a third of the burst');
  return { submitted, submit };
}

it('a worker drained while a burst is being placed: every execution runs once, none queued after the drain on it', async () => {
  const leaving = await startWorker({ area: 'burst' }, { slots: 4, cpu_cores: 4, memory_bytes: GiB });
  const staying = await startWorker({ area: 'burst' }, { slots: 4, cpu_cores: 4, memory_bytes: GiB });
  const { submitted, submit } = await burst('sleep 0.1; echo $HODEI_EXECUTION_ID', { area: 'burst' });
  await stopWorker(leaving.id);
  const drained = Date.now();
  await submit;
  const done = await Promise.all(submitted.map((s) => finished(s.id)));
  expect(done.filter((d) => d.status !== 'completed').map((d) => [d.status, d.message])).toEqual([]);
  const after = new Set(submitted.filter((s) => s.at > drained).map((s) => s.id));
  expect(after.size).toBeGreaterThan(0);
  expect(done.filter((d) => after.has(d.id) && d.worker_id !== staying.id)).toEqual([]);
  for (const d of done) expect(d.log_lines).toBe(1);
}, 60_000);

it('a worker killed -9 while a burst is being placed: nothing hangs, only what it had taken is lost, the rest completes elsewhere', async () => {
  const doomed = await startWorker({ area: 'burst-kill' }, { slots: 4, cpu_cores: 4, memory_bytes: GiB });
  const staying = await startWorker({ area: 'burst-kill' }, { slots: 4, cpu_cores: 4, memory_bytes: GiB });
  const { submitted, submit } = await burst('sleep 0.3', { area: 'burst-kill' });
  process.kill(doomed.pid, 'SIGKILL');
  const killed = Date.now();
  await submit;
  const done = await Promise.all(submitted.map((s) => finished(s.id, 20_000)));
  const outcome = (d: Execution) => `${d.status} on ${d.worker_id === doomed.id ? 'doomed' : d.worker_id === staying.id ? 'staying' : d.worker_id}`;
  const allowed = ['completed on staying', 'completed on doomed', 'lost on doomed'];
  expect(done.map(outcome).filter((o) => !allowed.includes(o))).toEqual([]);
  const after = new Set(submitted.filter((s) => s.at > killed + 300).map((s) => s.id));
  expect(after.size).toBeGreaterThan(0);
  expect(done.filter((d) => after.has(d.id)).map(outcome).filter((o) => o !== 'completed on staying')).toEqual([]);
}, 60_000);

it('a large execution that waits for long jobs to end does not keep the workers it fits from small ones for long', async () => {
  await startWorker({ area: 'stall', host: 'x' }, { slots: 4, cpu_cores: 2, memory_bytes: GiB });
  await startWorker({ area: 'stall', host: 'y' }, { slots: 4, cpu_cores: 2, memory_bytes: GiB });
  const longs = [];
  for (const host of ['x', 'y']) longs.push(await execute({ command: 'sleep 60', labels: { area: 'stall', host }, resources: { cpu_cores: 1.5, memory_bytes: 64 * MiB } }));
  for (const l of longs) await running(l.id);
  const t0 = Date.now();
  const big = await execute({ command: 'true', labels: { area: 'stall' }, resources: { cpu_cores: 2, memory_bytes: 64 * MiB } });
  const small = await execute({ command: 'true', labels: { area: 'stall' }, resources: { cpu_cores: 0.5, memory_bytes: 64 * MiB } });
  // both workers have room for it: at first they are held for the large one, then one of them is let go
  const done = await finished(small.id, 20_000);
  expect(done.status).toBe('completed');
  expect(startedAt(done) - t0).toBeGreaterThan(HOLD_ALL_MS - 1000);
  expect(startedAt(done) - t0).toBeLessThan(HOLD_ALL_MS + 3000);
  expect((await getExecution(big.id)).status).toBe('queued');
  for (const e of [big, ...longs]) expect((await call(wm.url, 'POST', `/api/v1/executions/${e.id}/cancel`)).status).toBe(202);
}, 60_000);
