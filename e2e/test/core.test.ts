// The platform driven from the outside on one installation: the whole workflow, live logs over
// SSE, the CLI's `hodei run`, timeout and cancel, and a cron schedule firing every second.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectFields, expectIso, expectUuid } from '../src/assert.js';
import { ROOT } from '../src/config.js';
import { infra } from '../src/context.js';
import { call, eventually, openSse } from '../src/http.js';
import { startStack, type Stack } from '../src/stack.js';

let stack: Stack;
let failed = false;
const orch = (m: string, p: string, b?: unknown) => call(stack.urls.orchestrator, m, p, b);
const sched = (m: string, p: string, b?: unknown) => call(stack.urls.scheduler, m, p, b);
const wm = (m: string, p: string, b?: unknown, h?: Record<string, string>) => call(stack.urls['worker-manager'], m, p, b, h);

const FINAL = ['completed', 'failed', 'cancelled', 'timed_out', 'lost'];
const finished = (id: string, timeoutMs = 30_000) =>
  eventually(async () => {
    const r = await wm('GET', `/api/v1/executions/${id}`);
    return FINAL.includes(r.body?.status) ? r.body : undefined;
  }, timeoutMs, `execution ${id} to finish`);

beforeAll(async () => {
  const i = infra();
  stack = await startStack({ databaseUrl: i.databaseUrl, natsUrl: i.natsUrl });
  await stack.startWorker({ name: 'e2e-core', slots: 4 });
});

afterAll(async () => {
  if (failed && stack) process.stderr.write(`${stack.logTail(15)}\n`);
  await stack?.stop();
});

describe('end to end', () => {
  it('pipeline → job → schedule → registered worker → started worker → execute → executions → logs', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const p = await orch('POST', '/api/v1/pipelines', { name: 'e2e-workflow', description: 'from the e2e suite' });
    expect(p.status).toBe(201);
    expectFields(p.body, ['id', 'name', 'description', 'status', 'created_at', 'updated_at'], 'pipeline');
    expect(p.body).toMatchObject({ name: 'e2e-workflow', description: 'from the e2e suite', status: 'active' });
    expect(p.headers.get('location')).toContain(p.body.id);
    expectIso(p.body.created_at, 'pipeline.created_at');

    const j = await orch('POST', '/api/v1/jobs', {
      name: 'e2e-hello',
      pipeline_id: p.body.id,
      command: 'echo "hello $WHO"; echo oops >&2; echo done',
      env: { WHO: 'e2e' },
      timeout_seconds: 60,
    });
    expect(j.status).toBe(201);
    expectFields(j.body, ['id', 'name', 'pipeline_id', 'command', 'status', 'created_at'], 'job');
    expect(j.body).toMatchObject({ status: 'pending', pipeline_id: p.body.id });
    expect(j.headers.get('location')).toContain(j.body.id);
    const jobId: string = j.body.id;

    const pipeline = await orch('GET', `/api/v1/pipelines/${p.body.id}`);
    expect(pipeline.status).toBe(200);
    expect(pipeline.body.jobs.map((x: { id: string }) => x.id)).toEqual([jobId]);

    // a schedule far in the future: recorded with its next run, never fires during the test
    const s = await sched('POST', '/api/v1/schedule', { job_id: jobId, cron: '0 0 1 1 *' });
    expect(s.status).toBe(201);
    expectFields(s.body, ['id', 'job_id', 'cron', 'timezone', 'status', 'next_run_at', 'created_at'], 'schedule');
    expect(s.body).toMatchObject({ job_id: jobId, cron: '0 0 1 1 *', timezone: 'UTC', status: 'scheduled' });
    expectIso(s.body.next_run_at, 'schedule.next_run_at');
    const scheduled = await sched('GET', '/api/v1/scheduled');
    expect(scheduled.status).toBe(200);
    expect(scheduled.body.map((x: { id: string }) => x.id)).toContain(s.body.id);
    expect((await sched('DELETE', `/api/v1/schedules/${s.body.id}`)).status).toBe(204);

    // a worker registered directly in the scheduler (as a remote agent would), heartbeat, deregistered
    const reg = await sched('POST', '/api/v1/workers', { type: 'shell', name: 'e2e-registered', labels: { pool: 'e2e-none' } });
    expect(reg.status).toBe(201);
    expectFields(reg.body, ['id', 'type', 'status', 'registered_at', 'last_heartbeat_at'], 'registered worker');
    expect(reg.body).toMatchObject({ type: 'shell', status: 'online' });
    const hb = await sched('POST', `/api/v1/workers/${reg.body.id}/heartbeat`);
    expect(hb.status).toBe(200);
    expectFields(hb.body, ['id', 'status', 'last_heartbeat_at'], 'heartbeat');
    expect((await sched('GET', `/api/v1/workers/${reg.body.id}`)).body.id).toBe(reg.body.id);
    const dereg = await sched('DELETE', `/api/v1/workers/${reg.body.id}`);
    expect(dereg.status).toBe(200);
    expect(dereg.body).toMatchObject({ id: reg.body.id, status: 'stopped' });

    // a worker process started by worker-manager
    const w = await wm('POST', '/api/v1/workers', { type: 'shell', name: 'e2e-started', capacity: { slots: 2, cpu_cores: 2, memory_bytes: 2 ** 30 } });
    expect(w.status).toBe(201);
    expectFields(w.body, ['id', 'type', 'status', 'pid', 'started_at'], 'started worker');
    expect(w.body).toMatchObject({ type: 'shell', status: 'running' });
    expect(w.body.pid).toBeGreaterThan(0);
    const st = await eventually(async () => {
      const r = await wm('GET', `/api/v1/workers/${w.body.id}/status`);
      return r.body?.last_heartbeat_at ? r.body : undefined;
    }, 30_000, 'the started worker to heartbeat');
    expectFields(st, ['id', 'status', 'pid', 'running_executions', 'last_heartbeat_at', 'uptime_seconds'], 'worker status');
    expect(st.pid).toBe(w.body.pid);
    expect((await wm('GET', '/api/v1/workers')).body.map((x: { id: string }) => x.id)).toContain(w.body.id);

    const ex = await wm('POST', '/api/v1/execute', { job_id: jobId });
    expect(ex.status).toBe(202);
    expectFields(ex.body, ['id', 'job_id', 'status', 'created_at'], 'execute');
    expect(ex.body).toMatchObject({ job_id: jobId, status: 'queued' });
    expectUuid(ex.body.id, 'execution id');

    const done = await finished(ex.body.id);
    expectFields(done, ['id', 'job_id', 'worker_id', 'attempt', 'status', 'exit_code', 'signal', 'progress', 'started_at', 'finished_at', 'duration_ms', 'log_lines'], 'execution');
    expect(done).toMatchObject({ status: 'completed', exit_code: 0, signal: null, attempt: 1, log_lines: 3 });
    expectIso(done.started_at, 'started_at');
    expectIso(done.finished_at, 'finished_at');
    expect(done.duration_ms).toBeGreaterThanOrEqual(0);

    const list = await wm('GET', `/api/v1/executions?job_id=${jobId}`);
    expect(list.status).toBe(200);
    expect(Array.isArray(list.body)).toBe(true);
    expect(list.body.map((x: { id: string }) => x.id)).toEqual([ex.body.id]);
    expect(list.headers.get('x-total-count')).toBe('1');

    const logs = await wm('GET', `/api/v1/executions/${ex.body.id}/logs`);
    expect(logs.status).toBe(200);
    expectFields(logs.body, ['execution_id', 'lines', 'next_seq'], 'logs');
    // stdout and stderr are two pipes: their relative order is the worker's read order, each in order
    type L = { seq: number; stream: string; line: string };
    const lines: L[] = logs.body.lines;
    expect(lines.map((l) => l.seq)).toEqual([1, 2, 3]);
    expect(lines.filter((l) => l.stream === 'stdout').map((l) => l.line)).toEqual(['hello e2e', 'done']);
    expect(lines.filter((l) => l.stream === 'stderr').map((l) => l.line)).toEqual(['oops']);
    expect(logs.body.next_seq).toBe(3);
    for (const l of logs.body.lines) expectIso(l.timestamp, 'log timestamp');
    const text = await fetch(`${stack.urls['worker-manager']}/api/v1/executions/${ex.body.id}/logs`, { headers: { accept: 'text/plain' } });
    expect(await text.text()).toBe(lines.map((l) => `${l.line}\n`).join(''));

    // the orchestrator learnt the outcome through NATS
    const job = await eventually(async () => {
      const r = await orch('GET', `/api/v1/jobs/${jobId}`);
      return r.body?.status === 'completed' ? r.body : undefined;
    }, 20_000, 'the job to show completed');
    expect(job.last_execution).toMatchObject({ id: ex.body.id, status: 'completed', exit_code: 0 });
  });

  it('streams log lines over SSE while the job runs, then completed', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const ex = await wm('POST', '/api/v1/execute', { name: 'e2e-sse', command: 'for i in 1 2 3 4 5; do echo line-$i; sleep 0.5; done; echo bye >&2' });
    expect(ex.status).toBe(202);
    const sse = openSse(`${stack.urls['worker-manager']}/api/v1/executions/${ex.body.id}/logs/stream`);
    const events = await sse.done;
    expect(sse.status()).toBe(200);
    expect(sse.contentType()).toMatch(/^text\/event-stream/);
    expect(events[0]?.event).toBe('connected');
    expect(events[0]?.data.execution_id).toBe(ex.body.id);
    const logs = events.filter((e) => e.event === 'log');
    expect(logs.map((e) => e.data.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(logs.map((e) => e.data.line)).toEqual(['line-1', 'line-2', 'line-3', 'line-4', 'line-5', 'bye']);
    expect(logs.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5', '6']);
    expect(logs[5]?.data.stream).toBe('stderr');
    const last = events.at(-1);
    expect(last?.event).toBe('completed');
    expect(last?.data).toMatchObject({ status: 'completed', exit_code: 0 });
    // live: the first line reached us well before the last one was even printed
    expect(logs[4]!.at - logs[0]!.at).toBeGreaterThanOrEqual(1000);
    const exec = (await wm('GET', `/api/v1/executions/${ex.body.id}`)).body;
    expect(logs[0]!.at).toBeLessThan(Date.parse(exec.finished_at) - 1000);

    // connecting afterwards replays from Last-Event-ID and completes at once
    const replay = openSse(`${stack.urls['worker-manager']}/api/v1/executions/${ex.body.id}/logs/stream`, { 'last-event-id': '4' });
    const again = await replay.done;
    expect(again.filter((e) => e.event === 'log').map((e) => e.data.line)).toEqual(['line-5', 'bye']);
    expect(again.at(-1)?.event).toBe('completed');
  });

  it('hodei run: exits with the job exit code, lines on stdout and stderr, a summary', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const cli = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [join(ROOT, 'packages/cli/dist/main.js'), ...args], { env: { ...process.env, ...stack.cliEnv, NO_COLOR: '1' }, timeout: 60_000 }, (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
        );
      });
    const r = await cli(['run', '--name', 'e2e-cli', '--no-timestamps', '--command', 'echo hello; echo oops >&2; exit 3']);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).toContain('[OUT] hello');
    expect(r.stdout).not.toContain('oops');
    expect(r.stderr).toContain('[ERR] oops');
    expect(r.stderr).toMatch(/status\s+failed/);
    expect(r.stderr).toMatch(/exit code\s+3/);

    const ok = await cli(['run', '--json', '--name', 'e2e-cli-json', '--command', 'echo a; echo b']);
    expect(ok.code, ok.stderr).toBe(0);
    const out = JSON.parse(ok.stdout);
    expect(out).toMatchObject({ status: 'completed', exit_code: 0, line_count: 2 });
    expect(out.lines.map((l: { line: string }) => l.line)).toEqual(['a', 'b']);
    // the job it created is there for everyone else
    const jobs = await orch('GET', '/api/v1/jobs?name=e2e-cli-json');
    expect(jobs.body.map((x: { id: string }) => x.id)).toEqual([out.job]);

    const timedOut = await cli(['run', '--name', 'e2e-cli-timeout', '--timeout', '1', '--command', 'sleep 30']);
    expect(timedOut.code, timedOut.stderr).toBe(124);
  });

  it('a job over its timeout is timed_out; a cancelled one is cancelled, with the lines it printed', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const t0 = Date.now();
    const slow = await wm('POST', '/api/v1/execute', { name: 'e2e-timeout', command: 'echo started; sleep 60', timeout_seconds: 1 });
    expect(slow.status).toBe(202);
    const timedOut = await finished(slow.body.id);
    expect(timedOut.status).toBe('timed_out');
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect((await wm('GET', `/api/v1/executions/${slow.body.id}/logs`)).body.lines.map((l: { line: string }) => l.line)).toEqual(['started']);

    const j = await orch('POST', '/api/v1/jobs', { name: 'e2e-cancel', command: 'echo started; sleep 60; echo never' });
    const ex = await wm('POST', '/api/v1/execute', { job_id: j.body.id });
    // Waits for the line itself, and stops early, saying why, when the execution ended without it.
    const before = await eventually(async () => {
      const lines = (await wm('GET', `/api/v1/executions/${ex.body.id}/logs`)).body?.lines?.map((l: { line: string }) => l.line);
      if (lines?.includes('started')) return { status: 'running', lines };
      const e = (await wm('GET', `/api/v1/executions/${ex.body.id}`)).body;
      return FINAL.includes(e?.status) ? { status: e.status, message: e.message, lines } : undefined;
    }, 30_000, 'the cancel job to print its first line');
    expect(before).toEqual({ status: 'running', lines: ['started'] });
    const c = await wm('POST', `/api/v1/executions/${ex.body.id}/cancel`);
    expect(c.status).toBe(202);
    const cancelled = await finished(ex.body.id);
    expect(cancelled.status).toBe('cancelled');
    const lines = (await wm('GET', `/api/v1/executions/${ex.body.id}/logs`)).body.lines.map((l: { line: string }) => l.line);
    expect(lines).toEqual(['started']);
    // cancelling what already finished is a conflict
    const again = await wm('POST', `/api/v1/executions/${ex.body.id}/cancel`);
    expect(again.status).toBe(409);
    await eventually(async () => ((await orch('GET', `/api/v1/jobs/${j.body.id}`)).body?.status === 'cancelled' ? true : undefined), 20_000, 'the job to show cancelled');
  });

  it('a 6-field cron schedule fires every second until paused', async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const j = await orch('POST', '/api/v1/jobs', { name: 'e2e-cron', command: 'echo tick' });
    const s = await sched('POST', '/api/v1/schedules', { job_id: j.body.id, cron: '* * * * * *', overlap_policy: 'allow' });
    expect(s.status).toBe(201);
    const runs = await eventually(async () => {
      const r = await sched('GET', `/api/v1/schedules/${s.body.id}/runs`);
      const fired = (r.body as { outcome: string; execution_id: string | null }[]).filter((x) => x.outcome === 'fired' && x.execution_id);
      return fired.length >= 2 ? fired : undefined;
    }, 30_000, 'two firings');
    // each firing is a real execution of the job that ran on the worker
    for (const run of runs.slice(0, 2)) {
      const e = await finished(run.execution_id!);
      expect(e).toMatchObject({ job_id: j.body.id, status: 'completed' });
    }
    const paused = await sched('PATCH', `/api/v1/schedules/${s.body.id}`, { enabled: false });
    const pausedAt = new Date().toISOString();
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ enabled: false, status: 'paused' });
    // a firing already under way when the pause committed may still land, but none due after it: watch 3 s
    await new Promise((r) => setTimeout(r, 3000));
    const all = (await sched('GET', `/api/v1/schedules/${s.body.id}/runs?limit=1000`)).body as { scheduled_at: string }[];
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(all.filter((r) => r.scheduled_at > pausedAt)).toEqual([]);
  });
});
