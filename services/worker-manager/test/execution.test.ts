// The real path: scheduler + orchestrator + worker-manager on one test installation, a real worker
// agent process spawned through POST /api/v1/workers, real shell commands.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv, pidGone } from '@hodei/platform';
import { FINAL_STATUSES, type Execution, type LogLine } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startScheduler } from '../../scheduler/src/service.js';
import { startWorkerManager } from '../src/service.js';
import { call, executeOn, finishedOn, getExecutionOn, logEvents, openSse, until } from './helpers.js';

let env: TestEnv;
let sched: RunningService;
let orch: RunningService;
let wm: RunningService;
/** Where the jobs write their pids; removed with everything in it after the file. */
let scratch = '';


const execute = (body: unknown) => executeOn(wm.url, body);
const getExecution = (id: string) => getExecutionOn(wm.url, id);
const finished = (id: string, ms = 20_000) => finishedOn(wm.url, id, ms);
const logs = async (id: string) =>
  ((await (await call(wm.url, 'GET', `/api/v1/executions/${id}/logs?limit=100000`)).json()) as { lines: LogLine[] }).lines;

async function startWorker(labels: Record<string, string>, slots = 4) {
  const res = await call(wm.url, 'POST', '/api/v1/workers', { type: 'shell', labels, capacity: { slots, cpu_cores: 4, memory_bytes: 4 * 1024 ** 3 } });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number; status: string };
  expect(w.status).toBe('running');
  await workerOnline(sched.url, w.id, 15_000);
  return w;
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'hodei-wm-execution-'));
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, killGraceMs: 1000, heartbeatIntervalMs: 300, heartbeatTimeoutMs: 3000 };
  sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  orch = await startOrchestrator(env.config('orchestrator', { ...common, port: ports.orchestrator }));
  wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
}, 120_000);

afterAll(async () => {
  await wm?.stop();
  await orch?.stop();
  await sched?.stop();
  await env?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

it('shows every final status and retry reason at 0 before the first one, so rate() and increase() count that first one', async () => {
  const text = await (await call(wm.url, 'GET', '/metrics')).text();
  for (const status of ['completed', 'failed', 'timed_out', 'cancelled', 'lost']) {
    expect(text, status).toMatch(new RegExp(`^hodei_executions_finished_total\\{status="${status}",[^}]*\\} \\d+$`, 'm'));
    expect(text, status).toMatch(new RegExp(`^hodei_execution_duration_seconds_count\\{[^}]*status="${status}"[^}]*\\} \\d+$`, 'm'));
  }
  for (const reason of ['failed', 'lost']) expect(text, reason).toMatch(new RegExp(`^hodei_retries_total\\{reason="${reason}",[^}]*\\} \\d+$`, 'm'));
});

it('buckets execution durations from a millisecond to the longest timeout (7 days), not all jobs over 4 h in +Inf', async () => {
  const text = await (await call(wm.url, 'GET', '/metrics')).text();
  const bounds = [...text.matchAll(/^hodei_execution_duration_seconds_bucket\{le="([^"]+)",[^}]*status="completed"[^}]*\}/gm)].map((m) => m[1]);
  expect(bounds).toEqual(['0.001', '0.005', '0.01', '0.05', '0.1', '0.5', '1', '5', '15', '60', '300', '900', '3600', '14400', '43200', '86400', '604800', '+Inf']);
});

describe('real executions on a spawned worker', () => {
  let worker: { id: string; pid: number };

  beforeAll(async () => {
    worker = await startWorker({ pool: 'main' }, 8);
  }, 30_000);

  it('the worker is a live process with a status view', async () => {
    expect(pidGone(worker.pid)).toBe(false);
    const s = await until(async () => {
      const v = (await (await call(wm.url, 'GET', `/api/v1/workers/${worker.id}/status`)).json()) as { last_heartbeat_at: string | null };
      return v.last_heartbeat_at && v;
    }, 5000, 'a heartbeat');
    expect(s).toMatchObject({ id: worker.id, status: 'running', pid: worker.pid, running_executions: [] });
    const list = (await (await call(wm.url, 'GET', '/api/v1/workers')).json()) as { id: string; name: string | null }[];
    expect(list.map((w) => w.id)).toContain(worker.id);
    // started without a name: listed under the one its agent registered with the scheduler
    const registered = (await (await call(sched.url, 'GET', `/api/v1/workers/${worker.id}`)).json()) as { name: string };
    expect(list.find((w) => w.id === worker.id)!.name).toBe(registered.name);
  });

  it('exit code 3, stdout and stderr in order', async () => {
    const sentAt = Date.now();
    const e = await execute({ command: 'echo hi; echo err >&2; exit 3', labels: { pool: 'main' } });
    const done = await finished(e.id);
    expect(done).toMatchObject({ status: 'failed', exit_code: 3, worker_id: worker.id, log_lines: 2 });
    const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    expect(done.started_at).toMatch(iso);
    expect(done.finished_at).toMatch(iso);
    expect(Date.parse(done.started_at!)).toBeGreaterThanOrEqual(sentAt - 1000);
    expect(Date.parse(done.started_at!)).toBeLessThanOrEqual(Date.parse(done.finished_at!));
    expect(done.duration_ms).toBeGreaterThanOrEqual(0);
    expect(done.duration_ms).toBeLessThan(10_000);
    const ls = await logs(e.id);
    expect(ls.map((l) => [l.seq, l.stream, l.line])).toEqual([
      [1, 'stdout', 'hi'],
      [2, 'stderr', 'err'],
    ]);
  });

  it('runs a job from the orchestrator by job_id; unknown job_id is a 404 naming it', async () => {
    const jr = await call(orch.url, 'POST', '/api/v1/jobs', { name: 'from-job', command: 'echo "$GREETING from job"', env: { GREETING: 'hello' }, labels: { pool: 'main' } });
    expect(jr.status).toBe(201);
    const job = (await jr.json()) as { id: string };
    const e = await execute({ job_id: job.id });
    expect(e).toMatchObject({ job_id: job.id, name: 'from-job' });
    const done = await finished(e.id);
    expect(done.status).toBe('completed');
    expect((await logs(e.id)).map((l) => l.line)).toEqual(['hello from job']);
    // the orchestrator's cleanup of a job removes its executions and their lines
    const cleanup = await call(wm.url, 'POST', '/api/v1/executions/cleanup', { job_ids: [job.id] });
    expect(cleanup.status).toBe(200);
    expect(await cleanup.json()).toEqual({ executions: 1, older_executions: 0, adhoc_executions: 0 });
    expect((await call(wm.url, 'GET', `/api/v1/executions/${e.id}`)).status).toBe(404);
    expect((await call(wm.url, 'GET', `/api/v1/executions/${e.id}/logs`)).status).toBe(404);
    expect(await (await call(wm.url, 'GET', `/api/v1/executions?job_id=${job.id}`)).json()).toEqual([]);
    const missing = await call(wm.url, 'POST', '/api/v1/execute', { job_id: '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11' });
    expect(missing.status).toBe(404);
    expect((await missing.json()).errors[0].path).toBe('job_id');
  });

  it("a job's end that NATS did not take at once is still told to log streams, counted once, and reaches the orchestrator", async () => {
    const jr = await call(orch.url, 'POST', '/api/v1/jobs', { name: 'finish-once', command: 'sleep 0.5; echo done', labels: { pool: 'main' } });
    const job = (await jr.json()) as { id: string };
    const completedCount = async () =>
      Number(/^hodei_executions_finished_total\{[^}]*status="completed"[^}]*\} (\d+)$/m.exec(await (await call(wm.url, 'GET', '/metrics')).text())?.[1] ?? 0); // no line before the first
    const before = await completedCount();
    // the first publish of this execution's end fails, as when NATS is briefly away; it is sent again
    const js = wm.ctx.bus.js;
    const publish = js.publish.bind(js);
    let refused = 0;
    js.publish = ((subject: string, ...rest: Parameters<typeof publish> extends [string, ...infer R] ? R : never) => {
      if (subject === wm.ctx.bus.subjects.executionFinished && refused++ === 0) return Promise.reject(new Error('NATS did not take it (test)'));
      return publish(subject, ...rest);
    }) as typeof js.publish;
    try {
      const e = await execute({ job_id: job.id });
      const c = await openSse(`${wm.url}/api/v1/executions/${e.id}/logs/stream`);
      // before: the stream sent 'done' and then nothing, for ever, and the end was never counted
      const done = await c.waitFor((ev) => ev.event === 'completed', 15_000);
      c.close();
      expect(JSON.parse(done.data)).toMatchObject({ status: 'completed', exit_code: 0 });
      await until(async () => (await (await call(orch.url, 'GET', `/api/v1/jobs/${job.id}`)).json()).status === 'completed', 15_000, 'the orchestrator hearing the end');
      await until(async () => refused >= 2, 10_000, 'the end announced again');
      expect(await completedCount()).toBe(before + 1);
    } finally {
      js.publish = publish;
    }
  });

  it('a command of 131,071 bytes, the most one argument can be, runs', async () => {
    const command = `echo ${'x'.repeat(131_058)} | wc -c`;
    expect(command).toHaveLength(131_071);
    const e = await execute({ command, labels: { pool: 'main' } });
    expect((await finished(e.id)).status).toBe('completed');
    expect((await logs(e.id)).map((l) => l.line.trim())).toEqual(['131059']);
  });

  it('a result file of 1 MiB comes back whole from GET /result', async () => {
    // 2 + 1,048,574 bytes: too large to travel in one NATS message with its status
    const e = await execute({ command: `{ printf '"'; head -c 1048574 /dev/zero | tr '\\0' r; printf '"'; } > "$HODEI_RESULT_FILE"`, labels: { pool: 'main' } });
    expect((await finished(e.id)).status).toBe('completed');
    const res = await call(wm.url, 'GET', `/api/v1/executions/${e.id}/result`);
    expect(res.status).toBe(200);
    expect(await res.json()).toBe('r'.repeat(1_048_574));
  });

  it('100,000 lines all stored, in order, none twice', async () => {
    const e = await execute({ command: 'seq 1 100000', labels: { pool: 'main' } });
    const done = await finished(e.id, 60_000);
    expect(done).toMatchObject({ status: 'completed', exit_code: 0, log_lines: 100_000 });
    // the final status and the log batches travel on two streams: the last lines may land just after
    await until(async () => {
      const r = await call(wm.url, 'GET', `/api/v1/executions/${e.id}/logs?since_seq=99999`);
      return ((await r.json()) as { lines: LogLine[] }).lines.length === 1;
    }, 20_000, 'the last line stored');
    const ls = await logs(e.id);
    expect(ls.length).toBe(100_000);
    for (let i = 0; i < ls.length; i++) {
      if (ls[i]!.seq !== i + 1 || ls[i]!.line !== String(i + 1)) throw new Error(`line ${i + 1} is ${JSON.stringify(ls[i])}`);
    }
  }, 90_000);

  it('a line every 200 ms reaches an SSE client while the job runs', async () => {
    const e = await execute({ command: 'for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.2; done', labels: { pool: 'main' } });
    const c = await openSse(`${wm.url}/api/v1/executions/${e.id}/logs/stream`);
    const first = await c.waitFor((ev) => ev.event === 'log', 10_000);
    // the job has not finished when its first line arrives
    expect(FINAL_STATUSES).not.toContain((await getExecution(e.id)).status);
    const done = await c.waitFor((ev) => ev.event === 'completed', 10_000);
    await c.ended;
    const got = logEvents(c);
    expect(got.map((l) => l.line)).toEqual(['tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5', 'tick 6']);
    const arrivals = c.events.filter((ev) => ev.event === 'log').map((ev) => ev.at);
    expect(arrivals.at(-1)! - first.at).toBeGreaterThan(700);
    expect(done.at - first.at).toBeGreaterThan(800);
    expect(JSON.parse(done.data)).toMatchObject({ status: 'completed', exit_code: 0 });
  });

  it('timeout ends timed_out', async () => {
    const e = await execute({ command: 'sleep 30', timeout_seconds: 1, labels: { pool: 'main' } });
    const done = await finished(e.id, 15_000);
    expect(done.status).toBe('timed_out');
    expect(done.duration_ms!).toBeLessThan(5000);
  });

  it('cancel of a running execution', async () => {
    const e = await execute({ command: 'echo started; sleep 30', labels: { pool: 'main' } });
    await until(async () => (await logs(e.id)).length === 1, 10_000, 'the job to start');
    const res = await call(wm.url, 'POST', `/api/v1/executions/${e.id}/cancel`);
    expect(res.status).toBe(202);
    const done = await finished(e.id, 10_000);
    expect(done.status).toBe('cancelled');
    expect((await call(wm.url, 'POST', `/api/v1/executions/${e.id}/cancel`)).status).toBe(409);
  });

  it('cancel right after execute never leaves the job running, whatever moment it lands', async () => {
    const dir = join(scratch, 'cancel-race');
    mkdirSync(dir);
    const ids: string[] = [];
    for (let i = 0; i < 15; i++) {
      const e = await execute({ command: `echo $$ > ${dir}/${i}.pid; exec sleep 60`, labels: { pool: 'main' } });
      ids.push(e.id);
      if (i % 3) await new Promise((r) => setTimeout(r, i));
      expect((await call(wm.url, 'POST', `/api/v1/executions/${e.id}/cancel`)).status).toBe(202);
    }
    for (const id of ids) expect((await finished(id, 15_000)).status).toBe('cancelled');
    const pids = execFileSync('sh', ['-c', `cat ${dir}/*.pid 2>/dev/null || true`]).toString().split(/\s+/).filter(Boolean).map(Number);
    await until(async () => pids.every(pidGone), 15_000, `every started job (${pids.join(', ')}) to be killed`);
  });

  it('cancel of a queued execution that no worker can take', async () => {
    const e = await execute({ command: 'echo never', labels: { pool: 'gpu' } });
    const waiting = await until(async () => (await getExecution(e.id)).waiting, 10_000, 'a waiting reason');
    expect(waiting).toContain('pool');
    const res = await call(wm.url, 'POST', `/api/v1/executions/${e.id}/cancel`);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ status: 'cancelled' });
    expect(await logs(e.id)).toEqual([]);
  });
});

describe('stopping workers', () => {
  it('drain: running work finishes, then the worker exits (stopped)', async () => {
    const w = await startWorker({ pool: 'drain' });
    const e = await execute({ command: 'sleep 1; echo done', labels: { pool: 'drain' } });
    await until(async () => (await getExecution(e.id)).status === 'running', 10_000, 'running');
    const res = await call(wm.url, 'DELETE', `/api/v1/workers/${w.id}`);
    expect([200, 202]).toContain(res.status);
    const done = await finished(e.id, 10_000);
    expect(done.status).toBe('completed');
    expect((await logs(e.id)).map((l) => l.line)).toEqual(['done']);
    const stopped = await until(async () => {
      const v = (await (await call(wm.url, 'GET', `/api/v1/workers/${w.id}`)).json()) as { status: string };
      return v.status === 'stopped' && v;
    }, 10_000, 'the worker to stop');
    expect(stopped).toMatchObject({ id: w.id, status: 'stopped' });
    expect(pidGone(w.pid)).toBe(true);
  }, 40_000);

  it('force: the worker and its job are killed at once', async () => {
    const w = await startWorker({ pool: 'force' });
    const pidFile = join(scratch, 'force.pid');
    const e = await execute({ command: `echo $$ > ${pidFile}; exec sleep 30`, labels: { pool: 'force' } });
    await until(async () => (await getExecution(e.id)).status === 'running', 10_000, 'running');
    const jobPid = await until(async () => existsSync(pidFile) && Number(readFileSync(pidFile, 'utf8')), 10_000, 'the job to write its pid');
    const t0 = Date.now();
    const res = await call(wm.url, 'DELETE', `/api/v1/workers/${w.id}?force=true`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: w.id, status: 'stopped' });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(pidGone(w.pid)).toBe(true);
    // the agent, told to stop now, cancels its jobs before it exits
    expect(pidGone(jobPid)).toBe(true);
    const done = await finished(e.id, 15_000);
    expect(done).toMatchObject({ status: 'cancelled', signal: 'SIGTERM', worker_id: w.id });
  }, 40_000);

  it('a worker that dies is noticed at once (exited)', async () => {
    const w = await startWorker({ pool: 'dies' });
    process.kill(w.pid, 'SIGKILL');
    const v = await until(async () => {
      const r = (await (await call(wm.url, 'GET', `/api/v1/workers/${w.id}`)).json()) as { status: string; signal: string | null };
      return r.status === 'exited' && r;
    }, 3000, 'exited');
    expect(v.signal).toBe('SIGKILL');
  }, 30_000);
});
