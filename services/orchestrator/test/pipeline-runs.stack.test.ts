// Pipeline runs end to end: the real scheduler, worker-manager and a worker process with 4 slots.
// Diamond timing, failure, cancel (of the run or of one job's execution), run env, the run list,
// the run event stream, cron-fired runs, and an orchestrator restarted mid-run that still finishes
// the run with every job executed once.
import type { RunningService } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, eventually, runEnded } from './helpers.js';
import { startRealStack, stopRealStack, type RealStack } from './real-stack.js';

let stack: RealStack | undefined;
let orchestrator: RunningService;
let scheduler: RunningService;
let workerManager: RunningService;
const api = (method: string, path: string, body?: unknown) => call(orchestrator.url, method, path, body);


beforeAll(async () => {
  stack = await startRealStack('runs-test');
  ({ orchestrator, scheduler, workerManager } = stack);
}, 90_000);

afterAll(async () => {
  if (stack) await stopRealStack(stack);
});

type RunJob = { name: string; job_id: string; status: string; execution_id: string | null; exit_code: number | null; started_at: string | null; finished_at: string | null };

async function createPipeline(body: unknown): Promise<{ id: string; ids: Record<string, string> }> {
  const p = await api('POST', '/api/v1/pipelines', body);
  expect(p.status).toBe(201);
  return { id: p.body.id, ids: Object.fromEntries(p.body.jobs.map((j: { name: string; id: string }) => [j.name, j.id])) };
}

async function finished(runId: string, ms = 60_000): Promise<{ status: string; finished_at: string; jobs: Record<string, RunJob>; env: Record<string, string> }> {
  const run = await runEnded(orchestrator.url, runId, ms);
  return { ...run, jobs: Object.fromEntries(run.jobs.map((j: RunJob) => [j.name, j])) };
}

const t = (iso: string | null) => Date.parse(iso!);
const logLines = async (executionId: string) =>
  (await call(workerManager.url, 'GET', `/api/v1/executions/${executionId}/logs`)).body.lines.map((l: { line: string }) => l.line);
const executionsOf = async (jobId: string) => (await call(workerManager.url, 'GET', `/api/v1/executions?job_id=${jobId}`)).body as Array<{ id: string; status: string }>;

describe('pipeline runs on a real worker', () => {
  it('diamond: B and C run side by side, D starts after both; every job gets the run env', async () => {
    const { id, ids } = await createPipeline({
      name: 'diamond',
      jobs: [
        // a takes a second: the run's first answer shows it started and the rest waiting
        { name: 'a', command: 'sleep 1; echo "a $STAGE"', env: { STAGE: 'job-default' } },
        { name: 'b', command: 'sleep 1; echo "b $STAGE"', depends_on: ['a'] },
        { name: 'c', command: 'sleep 1; echo "c $STAGE"', depends_on: ['a'] },
        { name: 'd', command: 'echo "d $STAGE $HODEI_PIPELINE_RUN_ID"', depends_on: ['b', 'c'] },
      ],
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`, { env: { STAGE: 'nightly' } });
    expect(r.status).toBe(202);
    expect(r.headers.get('location')).toBe(`/api/v1/pipeline-runs/${r.body.id}`);
    expect(r.body).toMatchObject({ pipeline_id: id, status: 'running', finished_at: null, env: { STAGE: 'nightly' } });
    const first = Object.fromEntries(r.body.jobs.map((j: RunJob) => [j.name, j]));
    expect(first.a.execution_id).toEqual(expect.any(String));
    expect([first.b.status, first.c.status, first.d.status]).toEqual(['waiting', 'waiting', 'waiting']);
    const run = await finished(r.body.id);
    expect(run.status).toBe('completed');
    expect(run.finished_at).toMatch(/\.\d{3}Z$/);
    expect(run.jobs.a!.execution_id).toBe(first.a.execution_id);
    const { a, b, c, d } = run.jobs as Record<'a' | 'b' | 'c' | 'd', RunJob>;
    for (const j of [a, b, c, d]) expect(j).toMatchObject({ status: 'completed', exit_code: 0 });
    // B and C overlap: each started before the other finished
    expect(t(b.started_at)).toBeLessThan(t(c.finished_at));
    expect(t(c.started_at)).toBeLessThan(t(b.finished_at));
    expect(t(b.started_at)).toBeGreaterThanOrEqual(t(a.finished_at));
    expect(t(d.started_at)).toBeGreaterThanOrEqual(Math.max(t(b.finished_at), t(c.finished_at)));
    expect(await logLines(a.execution_id!)).toEqual(['a nightly']);
    expect(await logLines(d.execution_id!)).toEqual([`d nightly ${r.body.id}`]);
    // each job ran exactly once, and the jobs' own status followed
    for (const name of ['a', 'b', 'c', 'd']) expect((await executionsOf(ids[name]!)).map((e) => e.id)).toEqual([run.jobs[name]!.execution_id]);
    expect((await api('GET', `/api/v1/jobs/${ids.d}`)).body.status).toBe('completed');
    const list = await api('GET', `/api/v1/pipelines/${id}/runs`);
    expect(list.status).toBe(200);
    expect(list.headers.get('x-total-count')).toBe('1');
    expect(list.body.map((x: { id: string }) => x.id)).toEqual([r.body.id]);
    expect((await api('GET', `/api/v1/pipelines/${id}/runs?status=running`)).body).toEqual([]);
  }, 90_000);

  it('a failing B skips D and fails the run while C still completes', async () => {
    const { id } = await createPipeline({
      name: 'diamond-fail',
      jobs: [
        { name: 'a', command: 'true' },
        { name: 'b', command: 'echo broken >&2; exit 4', depends_on: ['a'] },
        { name: 'c', command: 'sleep 1; echo c done', depends_on: ['a'] },
        { name: 'd', command: 'echo d', depends_on: ['b', 'c'] },
      ],
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`);
    const run = await finished(r.body.id);
    expect(run.status).toBe('failed');
    expect(run.jobs.b).toMatchObject({ status: 'failed', exit_code: 4 });
    expect(run.jobs.c).toMatchObject({ status: 'completed', exit_code: 0 });
    expect(run.jobs.d).toMatchObject({ status: 'skipped', execution_id: null, message: 'skipped: it depends on b, which ended failed' });
    // C was still running when B failed, and finished afterwards; the run ended only then
    expect(t(run.jobs.c!.finished_at)).toBeGreaterThan(t(run.jobs.b!.finished_at));
    expect(t(run.finished_at)).toBeGreaterThanOrEqual(t(run.jobs.c!.finished_at));
    expect(await executionsOf(run.jobs.d!.job_id)).toEqual([]);
  }, 90_000);

  it('two runs of one pipeline at once: a job failing in one run does not take the other run\'s execution of it', async () => {
    const { id, ids } = await createPipeline({
      name: 'side-by-side',
      jobs: [
        { name: 'f', command: 'if [ -n "$FAIL" ]; then sleep 1; exit 1; fi; sleep 3' },
        { name: 'g', command: 'echo "g FAIL=$FAIL"', depends_on: ['f'] },
      ],
    });
    const failing = await api('POST', `/api/v1/pipelines/${id}/runs`, { env: { FAIL: '1' } });
    // the second run's f starts after the first run's: it is the job's newest execution when that one fails
    await eventually(async () => ((await api('GET', `/api/v1/pipeline-runs/${failing.body.id}`)).body.jobs[0].execution_id ? true : undefined), 10_000);
    const passing = await api('POST', `/api/v1/pipelines/${id}/runs`);
    const [a, b] = await Promise.all([finished(failing.body.id), finished(passing.body.id)]);
    expect(a.status).toBe('failed');
    expect(a.jobs.f).toMatchObject({ status: 'failed', exit_code: 1 });
    expect(a.jobs.g).toMatchObject({ status: 'skipped', execution_id: null });
    expect(b.status).toBe('completed');
    expect(b.jobs.f!.execution_id).not.toBe(a.jobs.f!.execution_id);
    expect((await executionsOf(ids.g!)).map((e) => e.id)).toEqual([b.jobs.g!.execution_id]);
    expect(await logLines(b.jobs.g!.execution_id!)).toEqual(['g FAIL=']);
  }, 90_000);

  it('cancel mid-run: the running job is cancelled, the rest skipped; the event stream shows it and ends', async () => {
    const { id } = await createPipeline({
      name: 'to-cancel',
      jobs: [
        { name: 'long', command: 'echo started; sleep 30' },
        { name: 'after', command: 'echo never', depends_on: ['long'] },
      ],
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`);
    const events: Array<{ event: string; data: any }> = [];
    const res = await fetch(`${orchestrator.url}/api/v1/pipeline-runs/${r.body.id}/events/stream`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reading = (async () => {
      const reader = res.body!.getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += new TextDecoder().decode(value);
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
        }
      }
    })();
    // long's statuses as the stream told them: in the snapshot (running already when the stream opened) or in job events
    const longStatuses = () =>
      events.flatMap((e) => (e.event === 'snapshot' ? e.data.jobs.filter((j: { name: string }) => j.name === 'long') : e.event === 'job' && e.data.name === 'long' ? [e.data] : [])).map((j: { status: string }) => j.status);
    await eventually(async () => (longStatuses().includes('running') ? true : undefined), 30_000);
    const c = await api('POST', `/api/v1/pipeline-runs/${r.body.id}/cancel`);
    expect(c.status).toBe(202);
    const run = await finished(r.body.id, 30_000);
    expect(run.status).toBe('cancelled');
    expect(run.jobs.long!.status).toBe('cancelled');
    expect(run.jobs.after).toMatchObject({ status: 'skipped', execution_id: null });
    await reading; // the server ends the stream after `completed`
    expect(events[0]!.event).toBe('snapshot');
    const last = events.at(-1)!;
    expect(last.event).toBe('completed');
    expect(last.data.status).toBe('cancelled');
    expect(longStatuses().at(-1)).toBe('cancelled');
    expect(longStatuses()).toContain('running');
    expect((await api('POST', `/api/v1/pipeline-runs/${r.body.id}/cancel`)).status).toBe(409);
  }, 90_000);

  it('cancel with more jobs than slots: the queued jobs never start, though the running ones free their slots at once', async () => {
    const names = ['j1', 'j2', 'j3', 'j4', 'j5', 'j6'];
    const { id } = await createPipeline({
      name: 'cancel-queued',
      // each ends the moment it gets SIGTERM, so its slot is free again within milliseconds
      jobs: names.map((name) => ({ name, command: `trap 'exit 143' TERM; echo started ${name}; sleep 30 & wait` })),
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`);
    expect(r.status).toBe(202);
    const before = await eventually(async () => {
      const jobs = (await api('GET', `/api/v1/pipeline-runs/${r.body.id}`)).body.jobs as RunJob[];
      const count = (s: string) => jobs.filter((j) => j.status === s).length;
      return count('running') === 4 && count('queued') === 2 ? jobs : undefined;
    }, 30_000);
    expect((await api('POST', `/api/v1/pipeline-runs/${r.body.id}/cancel`)).status).toBe(202);
    const run = await finished(r.body.id, 30_000);
    expect(run.status).toBe('cancelled');
    for (const j of before.filter((x) => x.status === 'queued')) {
      const e = (await call(workerManager.url, 'GET', `/api/v1/executions/${j.execution_id}`)).body;
      expect({ name: j.name, status: e.status, message: e.message, lines: await logLines(j.execution_id!) })
        .toEqual({ name: j.name, status: 'cancelled', message: 'cancelled before it started', lines: [] });
    }
  }, 60_000);

  it("a job's execution cancelled on its own (not the run) cancels the run and skips what depends on it", async () => {
    const { id, ids } = await createPipeline({
      name: 'job-cancelled',
      jobs: [
        { name: 'a', command: 'echo started; sleep 30' },
        { name: 'b', command: 'echo never', depends_on: ['a'] },
      ],
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`);
    expect(r.status).toBe(202);
    const a = await eventually(async () => {
      const x = (await api('GET', `/api/v1/pipeline-runs/${r.body.id}`)).body.jobs.find((j: RunJob) => j.name === 'a');
      return x.status === 'running' ? x : undefined;
    }, 30_000);
    expect((await call(workerManager.url, 'POST', `/api/v1/executions/${a.execution_id}/cancel`)).status).toBe(202);
    const run = await finished(r.body.id, 30_000);
    expect(run.status).toBe('cancelled');
    expect(run.jobs.a).toMatchObject({ status: 'cancelled', execution_id: a.execution_id });
    expect(run.jobs.b).toMatchObject({ status: 'skipped', execution_id: null });
    expect(await executionsOf(ids.b!)).toEqual([]);
  }, 60_000);

  it('rejects a cycle with a 400 that names it', async () => {
    const r = await api('POST', '/api/v1/pipelines', {
      name: 'loop',
      jobs: [
        { name: 'x', command: 'true', depends_on: ['z'] },
        { name: 'y', command: 'true', depends_on: ['x'] },
        { name: 'z', command: 'true', depends_on: ['y'] },
      ],
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/problem\+json/);
    expect(r.body.errors[0].path).toMatch(/^jobs\.\d\.depends_on$/);
    expect(r.body.errors[0].message).toMatch(/cycle: (x → z → y → x|y → x → z → y|z → y → x → z)/);
    expect((await api('GET', '/api/v1/pipelines?name=loop')).body).toEqual([]);
  });

  it('rejects a bad run env naming the field', async () => {
    const { id } = await createPipeline({ name: 'env-check', jobs: [{ name: 'one', command: 'true' }] });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`, { env: { 'NOT-A-NAME': 'x' } });
    expect(r.status).toBe(400);
    expect(r.body.errors[0].path).toMatch(/^env/);
    expect((await api('GET', `/api/v1/pipelines/${id}/runs`)).body).toEqual([]);
  });

  it('a 6-field cron schedule runs a 3-job ETL pipeline once', async () => {
    const { id, ids } = await createPipeline({
      name: 'etl',
      jobs: [
        { name: 'extract', command: 'echo extracted 3 rows' },
        { name: 'transform', command: 'echo transformed', depends_on: ['extract'] },
        { name: 'load', command: 'echo loaded', depends_on: ['transform'] },
      ],
    });
    const second = new Date(Date.now() + 3000).getUTCSeconds();
    const s = await call(scheduler.url, 'POST', '/api/v1/schedules', { pipeline_id: id, cron: `${second} * * * * *` });
    expect(s.status).toBe(201);
    const runs = await eventually(async () => {
      const list = (await api('GET', `/api/v1/pipelines/${id}/runs`)).body;
      return list.length ? list : undefined;
    }, 30_000);
    expect((await call(scheduler.url, 'DELETE', `/api/v1/schedules/${s.body.id}`)).status).toBe(204);
    const run = await finished(runs[0].id);
    expect(run.status).toBe('completed');
    expect((await api('GET', `/api/v1/pipelines/${id}/runs`)).body).toHaveLength(1);
    for (const name of ['extract', 'transform', 'load']) expect(await executionsOf(ids[name]!)).toHaveLength(1);
    expect(t(run.jobs.load!.started_at)).toBeGreaterThanOrEqual(t(run.jobs.transform!.finished_at));
    expect(await logLines(run.jobs.extract!.execution_id!)).toEqual(['extracted 3 rows']);
  }, 90_000);

  it('an orchestrator restarted mid-run finishes the run, each job executed exactly once', async () => {
    const { id, ids } = await createPipeline({
      name: 'restart',
      jobs: [
        { name: 'first', command: 'sleep 2; echo first' },
        { name: 'second', command: 'echo second', depends_on: ['first'] },
        { name: 'side', command: 'sleep 1; echo side', depends_on: ['first'] },
        { name: 'last', command: 'echo last', depends_on: ['second', 'side'] },
      ],
    });
    const r = await api('POST', `/api/v1/pipelines/${id}/runs`);
    expect(r.status).toBe(202);
    const firstExec = r.body.jobs.find((j: RunJob) => j.name === 'first').execution_id;
    await eventually(async () => ((await call(workerManager.url, 'GET', `/api/v1/executions/${firstExec}`)).body.status === 'running' ? true : undefined), 30_000);
    await orchestrator.stop();
    // `first` finishes while the orchestrator is down: its events wait in the stream
    await eventually(async () => ((await call(workerManager.url, 'GET', `/api/v1/executions/${firstExec}`)).body.status === 'completed' ? true : undefined), 30_000);
    const { env, urls, ports } = stack!;
    orchestrator = stack!.orchestrator = await startOrchestrator(env.config('orchestrator', { urls, port: ports.orchestrator }));
    const run = await finished(r.body.id);
    expect(run.status).toBe('completed');
    for (const name of ['first', 'second', 'side', 'last']) {
      const execs = await executionsOf(ids[name]!);
      expect(execs, name).toHaveLength(1);
      expect(execs[0]!.id).toBe(run.jobs[name]!.execution_id);
    }
  }, 120_000);
});
