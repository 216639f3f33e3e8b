// Failure and retries with real processes: scheduler + orchestrator + worker-manager, worker agents
// spawned through POST /api/v1/workers, a worker killed with SIGKILL mid-job, failing commands
// retried with back-off, and a retry that waits through a worker-manager restart.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, serviceAddresses, workerOnline, type Config, type RunningService, type TestEnv } from '@hodei/platform';
import type { Execution } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startScheduler } from '../../scheduler/src/service.js';
import { backoffMs } from '../src/retries.js';
import { startWorkerManager } from '../src/service.js';
import { call, executeOn, finishedOn, getExecutionOn, until } from './helpers.js';

const HEARTBEAT_MS = 300;
const TIMEOUT_MS = 1200;

let env: TestEnv;
let sched: RunningService;
let orch: RunningService;
let wm: RunningService;
let wmConfig: Config;
let scratch: string;


const execute = (body: unknown) => executeOn(wm.url, body);
const getExecution = (id: string) => getExecutionOn(wm.url, id);
const finished = (id: string, ms = 30_000) => finishedOn(wm.url, id, ms);
/** The execution that retries `id` (its message names it). */
const retryOf = (id: string, ms = 10_000) =>
  until(async () => {
    const m = /retried as ([0-9a-f-]{36})/.exec((await getExecution(id)).message ?? '');
    return m ? getExecution(m[1]!) : null;
  }, ms, `the retry of ${id}`);
const ms = (iso: string | null) => Date.parse(iso ?? '');

async function startWorker(labels: Record<string, string>, slots = 2) {
  const res = await call(wm.url, 'POST', '/api/v1/workers', { type: 'shell', labels, capacity: { slots, cpu_cores: 2, memory_bytes: 2 * 1024 ** 3 } });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number };
  await workerOnline(sched.url, w.id, 20_000);
  return w;
}
const schedWorker = async (id: string) => (await (await call(sched.url, 'GET', `/api/v1/workers/${id}`)).json()) as { status: string };
/** A counter's value for one label (the registry adds a `service` label of its own). */
const metric = async (name: string, label: string) => {
  const text = await (await fetch(`${wm.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.split(' ').at(-1)) : 0;
};

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'hodei-retries-'));
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, killGraceMs: 500, heartbeatIntervalMs: HEARTBEAT_MS, heartbeatTimeoutMs: TIMEOUT_MS };
  sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  orch = await startOrchestrator(env.config('orchestrator', { ...common, port: ports.orchestrator }));
  wmConfig = env.config('worker-manager', { ...common, port: ports['worker-manager'] });
  wm = await startWorkerManager(wmConfig);
}, 120_000);

afterAll(async () => {
  await wm?.stop();
  await orch?.stop();
  await sched?.stop();
  await env?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

describe('back-off', () => {
  it('doubles per attempt, jitters by at most 20 %, and is capped at an hour', () => {
    expect(backoffMs(10, 1, 0.5)).toBe(10_000);
    expect(backoffMs(10, 2, 0.5)).toBe(20_000);
    expect(backoffMs(10, 3, 0.5)).toBe(40_000);
    expect(backoffMs(10, 1, 0)).toBe(8000);
    expect(backoffMs(10, 1, 0.999_999)).toBeLessThanOrEqual(12_000);
    expect(backoffMs(10, 1, 0.999_999)).toBeGreaterThan(11_999);
    expect(backoffMs(600, 10, 0.9)).toBe(3600_000);
    expect(backoffMs(0, 5, 0.7)).toBe(0);
  });
});

describe('a worker it starts', () => {
  it('gets the heartbeat time-out the scheduler uses, so it kills jobs cut off from NATS before they are retried elsewhere', async () => {
    const w = await startWorker({ pool: 'timeout' }, 1);
    const environ = readFileSync(`/proc/${w.pid}/environ`, 'latin1').split('\0');
    expect(environ).toContain(`HODEI_HEARTBEAT_TIMEOUT_MS=${TIMEOUT_MS}`);
    expect(environ).toContain(`HODEI_HEARTBEAT_INTERVAL_MS=${HEARTBEAT_MS}`);
    await call(wm.url, 'DELETE', `/api/v1/workers/${w.id}?force=true`);
  });
});

describe('a worker killed with SIGKILL mid-job', () => {
  it('goes offline, its execution is lost within the time-out, and the retry completes on another worker', async () => {
    const a = await startWorker({ pool: 'kill' }, 1);
    const b = await startWorker({ pool: 'kill' }, 1);
    const e = await execute({ command: 'echo start; sleep 1; echo done', labels: { pool: 'kill' }, max_retries: 1, retry_backoff_seconds: 0 });
    const running = await until(async () => {
      const x = await getExecution(e.id);
      return x.status === 'running' && x;
    }, 20_000, 'execution running');
    const victim = running.worker_id === a.id ? a : b;
    const other = victim === a ? b : a;
    const pid = ((await (await call(wm.url, 'GET', `/api/v1/workers/${victim.id}`)).json()) as { pid: number }).pid;
    expect(pid).toBe(victim.pid);

    const retriesBefore = await metric('hodei_retries_total', 'reason="lost"');
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const lost = await until(async () => {
      const x = await getExecution(e.id);
      return x.status === 'lost' && x;
    }, TIMEOUT_MS + 5000, 'execution lost');
    expect(Date.now() - killedAt).toBeLessThan(TIMEOUT_MS + 2000);
    expect(lost.worker_id).toBe(victim.id);
    expect((await schedWorker(victim.id)).status).toBe('offline');
    expect(((await (await call(wm.url, 'GET', `/api/v1/workers/${victim.id}`)).json()) as { status: string; signal: string }).status).toBe('exited');

    const retry = await retryOf(e.id);
    expect(retry).toMatchObject({ attempt: 2, retry_of: e.id, job_id: null });
    const done = await finished(retry.id);
    expect(done).toMatchObject({ status: 'completed', exit_code: 0, worker_id: other.id, attempt: 2, retry_of: e.id });
    // the lost execution keeps its status and says what became of it
    const after = await getExecution(e.id);
    expect(after.status).toBe('lost');
    expect(after.message).toContain(`retried as ${retry.id}`);
    expect((await metric('hodei_retries_total', 'reason="lost"')) - retriesBefore).toBe(1);
  }, 90_000);
});

describe('a failing job', () => {
  it('with max_retries 2 runs 3 times, each attempt after its back-off and on another worker, then stays failed', async () => {
    await startWorker({ pool: 'fail' });
    await startWorker({ pool: 'fail' });
    const before = await metric('hodei_retries_total', 'reason="failed"');
    const first = await execute({ command: 'echo attempt; exit 3', labels: { pool: 'fail' }, max_retries: 2, retry_backoff_seconds: 1 });
    const chain: Execution[] = [await finished(first.id)];
    for (let i = 0; i < 2; i++) {
      const next = await retryOf(chain.at(-1)!.id);
      chain.push(await finished(next.id));
    }
    expect(chain.map((x) => [x.attempt, x.status, x.exit_code])).toEqual([
      [1, 'failed', 3],
      [2, 'failed', 3],
      [3, 'failed', 3],
    ]);
    expect(chain[1]!.retry_of).toBe(chain[0]!.id);
    expect(chain[2]!.retry_of).toBe(chain[1]!.id);
    // back-off 1 s then 2 s, each within -20 % jitter
    expect(ms(chain[1]!.started_at) - ms(chain[0]!.finished_at)).toBeGreaterThanOrEqual(800);
    expect(ms(chain[2]!.started_at) - ms(chain[1]!.finished_at)).toBeGreaterThanOrEqual(1600);
    // the placer prefers a worker the previous attempt did not run on
    expect(chain[1]!.worker_id).not.toBe(chain[0]!.worker_id);
    expect(chain[2]!.worker_id).not.toBe(chain[1]!.worker_id);
    // the last attempt is not retried
    expect(chain[2]!.message ?? '').not.toContain('retried as');
    const all = (await (await call(wm.url, 'GET', '/api/v1/executions?limit=1000')).json()) as Execution[];
    expect(all.filter((x) => x.retry_of === chain[2]!.id)).toEqual([]);
    // each attempt's retry, by the filter
    for (const [i, expected] of [[0, [chain[1]!.id]], [1, [chain[2]!.id]], [2, []]] as const) {
      const byFilter = (await (await call(wm.url, 'GET', `/api/v1/executions?retry_of=${chain[i]!.id}`)).json()) as Execution[];
      expect(byFilter.map((x) => x.id)).toEqual(expected);
    }
    expect((await metric('hodei_retries_total', 'reason="failed"')) - before).toBe(2);
  }, 90_000);

  it('a job whose retry succeeds: the job follows its newest execution (queued, not failed, while the retry waits), and a pipeline run completes', async () => {
    await startWorker({ pool: 'flaky' });
    const marker = join(scratch, 'flaky-marker');
    const pipeline = (await (await call(orch.url, 'POST', '/api/v1/pipelines', { name: 'flaky' })).json()) as { id: string };
    const flaky = (await (
      await call(orch.url, 'POST', '/api/v1/jobs', {
        name: 'flaky',
        pipeline_id: pipeline.id,
        command: `if [ -f ${marker} ]; then echo second; else touch ${marker}; exit 3; fi`,
        labels: { pool: 'flaky' },
        max_retries: 1,
        retry_backoff_seconds: 1,
      })
    ).json()) as { id: string };
    const after = (await (
      await call(orch.url, 'POST', '/api/v1/jobs', { name: 'after', pipeline_id: pipeline.id, command: 'echo after', labels: { pool: 'flaky' }, depends_on: [flaky.id] })
    ).json()) as { id: string };
    const finals: Array<{ execution_id: string; status: string; retried_as?: string }> = [];
    const sub = wm.ctx.bus.nc.subscribe(wm.ctx.bus.subjects.executionFinished, {
      callback: (_err, m) => {
        const e = m.json<{ job_id: string; execution_id: string; status: string; retried_as?: string }>();
        if (e.job_id === flaky.id) finals.push({ execution_id: e.execution_id, status: e.status, retried_as: e.retried_as });
      },
    });
    const runRes = await call(orch.url, 'POST', `/api/v1/pipelines/${pipeline.id}/runs`);
    expect(runRes.status).toBe(202);
    const run = (await runRes.json()) as { id: string };
    const seen = new Set<string>();
    const jobSeen = new Set<string>();
    const final = await until(async () => {
      jobSeen.add(((await (await call(orch.url, 'GET', `/api/v1/jobs/${flaky.id}`)).json()) as { status: string }).status);
      const r = (await (await call(orch.url, 'GET', `/api/v1/pipeline-runs/${run.id}`)).json()) as { status: string };
      seen.add(r.status);
      return r.status !== 'running' && r;
    }, 40_000, 'pipeline run to end');
    sub.unsubscribe();
    // the failed attempt's final event names its retry, so the job goes from it to queued, never failed
    expect(jobSeen.has('failed')).toBe(false);
    expect(final).toMatchObject({ status: 'completed' });
    expect([...seen]).toEqual(['running', 'completed']);
    const job = (await (await call(orch.url, 'GET', `/api/v1/jobs/${flaky.id}`)).json()) as { status: string };
    expect(job.status).toBe('completed');
    const runs = (await (await call(wm.url, 'GET', `/api/v1/executions?job_id=${flaky.id}`)).json()) as Execution[];
    expect(runs.map((x) => [x.attempt, x.status])).toEqual([
      [2, 'completed'],
      [1, 'failed'],
    ]);
    expect(finals).toEqual([
      { execution_id: runs[1]!.id, status: 'failed', retried_as: runs[0]!.id },
      { execution_id: runs[0]!.id, status: 'completed', retried_as: undefined },
    ]);
    const dependent = (await (await call(wm.url, 'GET', `/api/v1/executions?job_id=${after.id}`)).json()) as Execution[];
    expect(dependent.map((x) => x.status)).toEqual(['completed']);
  }, 90_000);
});

describe('a retry waiting out its back-off', () => {
  it('survives a worker-manager restart and runs when due', async () => {
    await startWorker({ pool: 'restart' });
    const first = await execute({ command: 'exit 3', labels: { pool: 'restart' }, max_retries: 1, retry_backoff_seconds: 4 });
    const failed = await finished(first.id);
    const waiting = await retryOf(first.id);
    expect(waiting).toMatchObject({ status: 'queued', attempt: 2, retry_of: first.id });
    expect(waiting.waiting).toContain('back-off until');

    await wm.stop(); // stops its workers too
    // back on a port of its own: another test file may have taken the one it released; nothing calls
    // it through the scheduler's or orchestrator's URL from here on
    wm = await startWorkerManager({ ...wmConfig, port: 0 });
    await startWorker({ pool: 'restart' });
    const done = await finished(waiting.id, 40_000);
    expect(done).toMatchObject({ status: 'failed', exit_code: 3, attempt: 2, retry_of: first.id });
    expect(ms(done.started_at) - ms(failed.finished_at)).toBeGreaterThanOrEqual(0.8 * 4000);
  }, 90_000);
});
