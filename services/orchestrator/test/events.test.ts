// Contract tests against a stand-in worker-manager (helpers.ts), with execution events published by
// hand: job status follows the events' exact fields, including orderings a real installation does
// not produce on demand (late, out of order, unknown job, junk); cancel asks worker-manager for
// each queued and running execution, one of them already gone (409); events published while the
// orchestrator is down are picked up after a restart, and those that come while its database is down
// once it is back, their failure said once. Real services: stack.test.ts.
import { ACK_WAIT_MS, createLogger, createTestEnv, encodeJson, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ExecutionQueuedEvent, ExecutionStatusEvent } from '@hodei/types';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startOrchestrator } from '../src/service.js';
import { call, deadUrl, eventually, fakeWorkerManager, withWorkerManager, type FakeWorkerManager } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let wm: FakeWorkerManager;
const api = (method: string, path: string, body?: unknown) => call(svc.url, method, path, body);
const now = () => new Date().toISOString();

const spec = {
  name: 'x', command: 'true', script: null, args: [], env: {}, working_dir: null, timeout_seconds: null, priority: 5,
  resources: { cpu_cores: 0.1, memory_bytes: 1024 }, labels: {}, max_retries: 0, retry_backoff_seconds: 10,
};

async function publishQueued(jobId: string | null, executionId: string): Promise<void> {
  const e: ExecutionQueuedEvent = { execution_id: executionId, job_id: jobId, priority: 5, spec, attempt: 1, created_at: now() };
  await svc.ctx.bus.js.publish(svc.ctx.bus.subjects.executionQueued, encodeJson(e));
}

async function publishStatus(e: Partial<ExecutionStatusEvent> & Pick<ExecutionStatusEvent, 'execution_id' | 'job_id' | 'status'>, finished = false): Promise<void> {
  const full: ExecutionStatusEvent = { worker_id: null, timestamp: now(), ...e };
  const subject = finished ? svc.ctx.bus.subjects.executionFinished : svc.ctx.bus.subjects.executionStatus(e.execution_id);
  await svc.ctx.bus.js.publish(subject, encodeJson(full));
}

const jobStatus = (id: string, status: string) => async () => {
  const r = await api('GET', `/api/v1/jobs/${id}`);
  return r.body.status === status ? r.body : undefined;
};

beforeAll(async () => {
  env = createTestEnv();
  wm = await fakeWorkerManager();
  const base = env.config('orchestrator');
  svc = await startOrchestrator(withWorkerManager(base, wm.url));
});
afterAll(async () => {
  await svc?.stop();
  await wm?.close();
  await env?.cleanup();
});

describe('job status from execution events (contract)', () => {
  it('shows every kind and outcome of an execution event at 0 before the first one, so rate() and increase() count that first one', async () => {
    const text = await (await fetch(`${svc.url}/metrics`)).text();
    for (const kind of ['queued', 'status']) {
      for (const outcome of ['applied', 'ignored', 'unknown_job', 'invalid']) {
        expect(text, `${kind} ${outcome}`).toMatch(new RegExp(`^hodei_orchestrator_execution_events_total\\{kind="${kind}",outcome="${outcome}",[^}]*\\} \\d+$`, 'm'));
      }
    }
  });

  it('follows queued → running → completed with exit code and duration', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'follows', command: 'true' })).body;
    const eid = newId();
    await publishQueued(job.id, eid);
    const queued = await eventually(jobStatus(job.id, 'queued'));
    expect(queued.last_execution).toMatchObject({ id: eid, status: 'queued', exit_code: null, duration_ms: null });

    const started = '2026-11-22T04:07:01.123Z';
    await publishStatus({ execution_id: eid, job_id: job.id, status: 'running', worker_id: newId(), started_at: started });
    await eventually(jobStatus(job.id, 'running'));

    await publishStatus({ execution_id: eid, job_id: job.id, status: 'completed', exit_code: 0, started_at: started, finished_at: '2026-11-22T04:07:02.655Z', duration_ms: 1532 });
    const done = await eventually(jobStatus(job.id, 'completed'));
    expect(done.last_execution).toEqual({
      id: eid, status: 'completed', exit_code: 0, started_at: started, finished_at: '2026-11-22T04:07:02.655Z', duration_ms: 1532,
    });
    const listed = await api('GET', '/api/v1/jobs?status=completed');
    expect(listed.body.map((j: { id: string }) => j.id)).toContain(job.id);
  });

  it('never lets a late non-final event overwrite a final status', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'final-stays', command: 'false' })).body;
    const eid = newId();
    await publishStatus({ execution_id: eid, job_id: job.id, status: 'failed', exit_code: 3, duration_ms: 20, finished_at: now() }, true);
    await eventually(jobStatus(job.id, 'failed'));
    // late events on both subjects, then a marker job to know they were processed
    await publishStatus({ execution_id: eid, job_id: job.id, status: 'running', started_at: now() });
    await publishQueued(job.id, eid);
    // one marker per consumer: once both show, the late events before them were processed
    const m1 = (await api('POST', '/api/v1/jobs', { name: 'marker-1' })).body;
    const m2 = (await api('POST', '/api/v1/jobs', { name: 'marker-2' })).body;
    await publishStatus({ execution_id: newId(), job_id: m1.id, status: 'running' });
    await publishQueued(m2.id, newId());
    await eventually(jobStatus(m1.id, 'running'));
    await eventually(jobStatus(m2.id, 'queued'));
    const r = await api('GET', `/api/v1/jobs/${job.id}`);
    expect(r.body.status).toBe('failed');
    expect(r.body.last_execution).toMatchObject({ id: eid, status: 'failed', exit_code: 3, duration_ms: 20 });
  });

  it('takes status from the newest execution', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'newest', command: 'true' })).body;
    const older = newId();
    const newer = newId();
    await publishStatus({ execution_id: newer, job_id: job.id, status: 'timed_out', duration_ms: 1000 });
    await eventually(jobStatus(job.id, 'timed_out'));
    await publishStatus({ execution_id: older, job_id: job.id, status: 'running' });
    const otherJob = (await api('POST', '/api/v1/jobs', { name: 'sync' })).body;
    await publishStatus({ execution_id: newId(), job_id: otherJob.id, status: 'running' });
    await eventually(jobStatus(otherJob.id, 'running'));
    const r = await api('GET', `/api/v1/jobs/${job.id}`);
    expect(r.body.status).toBe('timed_out');
    expect(r.body.last_execution.id).toBe(newer);
  });

  it('shows a retried execution\'s job queued for the retry, not failed, before the retry\'s own event', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'retried', command: 'exit 3', max_retries: 1 })).body;
    const first = newId();
    const retry = newId();
    await publishStatus({ execution_id: first, job_id: job.id, status: 'running' });
    await eventually(jobStatus(job.id, 'running'));
    // the worker's own end comes first: whether a retry follows, only worker-manager's copy says
    const ignored = async () =>
      (await svc.ctx.metrics.getSingleMetric('hodei_orchestrator_execution_events_total')!.get()).values.reduce(
        (n, v) => n + (v.labels.kind === 'status' && v.labels.outcome === 'ignored' ? v.value : 0),
        0,
      );
    const before = await ignored();
    await publishStatus({ execution_id: first, job_id: job.id, status: 'failed', exit_code: 3 });
    await eventually(async () => ((await ignored()) > before ? true : undefined));
    expect((await api('GET', `/api/v1/jobs/${job.id}`)).body.status).toBe('running');
    await publishStatus({ execution_id: first, job_id: job.id, status: 'failed', exit_code: 3, retried_as: retry }, true);
    const queued = await eventually(jobStatus(job.id, 'queued'));
    expect(queued.last_execution).toMatchObject({ id: retry, status: 'queued' });
    await publishStatus({ execution_id: retry, job_id: job.id, status: 'completed', exit_code: 0 }, true);
    await eventually(jobStatus(job.id, 'completed'));
  });

  it('acks and ignores events for unknown jobs, no job, and bad payloads; cancels a live execution of an unknown job', async () => {
    const [ofUnknown, endedOfUnknown, ofNone] = [newId(), newId(), newId()];
    let refused = false;
    wm.handler = (req) => {
      if (req.method !== 'POST' || req.path !== `/api/v1/executions/${ofUnknown}/cancel`) return undefined;
      if (refused) return { status: 202, body: { id: ofUnknown, status: 'cancelled' } };
      refused = true;
      return { status: 503, body: { title: 'Service Unavailable', status: 503 } };
    };
    const counted = async (outcome: string) =>
      (await svc.ctx.metrics.getSingleMetric('hodei_orchestrator_execution_events_total')!.get()).values.reduce(
        (n, v) => n + (v.labels.kind === 'status' && v.labels.outcome === outcome ? v.value : 0),
        0,
      );
    const [unknownBefore, ignoredBefore] = [await counted('unknown_job'), await counted('ignored')];
    await publishStatus({ execution_id: ofUnknown, job_id: newId(), status: 'running' });
    await publishStatus({ execution_id: endedOfUnknown, job_id: newId(), status: 'completed' }, true);
    await publishStatus({ execution_id: ofNone, job_id: null, status: 'running' });
    await svc.ctx.bus.js.publish(svc.ctx.bus.subjects.executionFinished, new TextEncoder().encode('{not json'));
    const job = (await api('POST', '/api/v1/jobs', { name: 'after-junk' })).body;
    await publishStatus({ execution_id: newId(), job_id: job.id, status: 'running' });
    await eventually(jobStatus(job.id, 'running'));
    await eventually(async () =>
      (await counted('unknown_job')) - unknownBefore === 2 && (await counted('ignored')) > ignoredBefore ? true : undefined,
    );
    const cancels = wm.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/cancel')).map((r) => r.path);
    // worker-manager's 503 leaves the event to be delivered again: the cancel is asked once more
    expect(cancels.filter((p) => p === `/api/v1/executions/${ofUnknown}/cancel`)).toHaveLength(2);
    expect(cancels.join()).not.toMatch(new RegExp(`${endedOfUnknown}|${ofNone}|${job.id}`));
    wm.handler = () => undefined;
    const health = await api('GET', '/health');
    expect(health.status).toBe(200);
  });

  it('refuses to delete a running job or its pipeline (409), then allows it once finished', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'busy', jobs: [{ name: 'a', command: 'sleep 5' }] })).body;
    const jobId = p.jobs[0].id;
    const eid = newId();
    await publishStatus({ execution_id: eid, job_id: jobId, status: 'running' });
    await eventually(jobStatus(jobId, 'running'));
    expect((await api('GET', `/api/v1/pipelines/${p.id}`)).body.jobs[0].status).toBe('running');
    const delJob = await api('DELETE', `/api/v1/jobs/${jobId}`);
    expect(delJob.status).toBe(409);
    expect(delJob.headers.get('content-type')).toContain('application/problem+json');
    expect((await api('DELETE', `/api/v1/pipelines/${p.id}`)).status).toBe(409);
    await publishStatus({ execution_id: eid, job_id: jobId, status: 'cancelled' }, true);
    await eventually(jobStatus(jobId, 'cancelled'));
    expect((await api('DELETE', `/api/v1/pipelines/${p.id}`)).status).toBe(204);
  });

  it('refuses to delete or clean up a job (or its pipeline) while an older execution runs and the newest has ended', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'overlap', jobs: [{ name: 'a', command: 'sleep 5' }] })).body;
    const jobId = p.jobs[0].id;
    const older = newId();
    const newer = newId();
    await publishStatus({ execution_id: older, job_id: jobId, status: 'running' });
    await publishStatus({ execution_id: newer, job_id: jobId, status: 'completed', exit_code: 0 }, true);
    await eventually(jobStatus(jobId, 'completed'));
    const delJob = await api('DELETE', `/api/v1/jobs/${jobId}`);
    expect(delJob.status).toBe(409);
    expect(delJob.body.detail).toContain('1 queued or running execution');
    expect((await api('DELETE', `/api/v1/pipelines/${p.id}`)).status).toBe(409);
    await svc.ctx.db.query("UPDATE jobs SET updated_at = now() - interval '2 days' WHERE id = $1", [jobId]);
    const cleanup = await api('POST', '/api/v1/cleanup', { older_than_days: 1, dry_run: true });
    expect(cleanup.body.job_ids).not.toContain(jobId);
    await publishStatus({ execution_id: older, job_id: jobId, status: 'failed', exit_code: 1 }, true);
    await eventually(async () => ((await api('DELETE', `/api/v1/jobs/${jobId}`)).status === 204 ? true : undefined));
    expect((await api('GET', `/api/v1/jobs/${jobId}`)).status).toBe(404);
  });
});

describe('cancel against a stand-in worker-manager (contract)', () => {
  it("cancels the job's queued and running executions through worker-manager", async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'to-cancel', command: 'sleep 100' })).body;
    const queued = newId();
    const running = newId();
    const gone = newId();
    wm.requests.length = 0;
    wm.handler = (req) => {
      if (req.method === 'GET' && req.path === '/api/v1/executions' && req.query.get('job_id') === job.id) {
        const status = req.query.get('status');
        if (status === 'queued') return { status: 200, body: [{ id: queued, job_id: job.id, status: 'queued' }] };
        if (status === 'running') return { status: 200, body: [{ id: running, job_id: job.id, status: 'running' }, { id: gone, job_id: job.id, status: 'running' }] };
      }
      if (req.method === 'POST' && req.path === `/api/v1/executions/${gone}/cancel`) return { status: 409, body: { title: 'Conflict', status: 409 } };
      if (req.method === 'POST' && req.path.endsWith('/cancel')) return { status: 202, body: { status: 'cancelled' } };
      return undefined;
    };
    const r = await api('POST', `/api/v1/jobs/${job.id}/cancel`);
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ id: job.id, name: 'to-cancel' });
    // the one that had ended (409) is not counted
    expect(r.body.cancelled).toEqual({ executions: 2, queued: 1, running: 1 });
    const cancels = wm.requests.filter((q) => q.method === 'POST').map((q) => q.path).sort();
    expect(cancels).toEqual([queued, running, gone].map((id) => `/api/v1/executions/${id}/cancel`).sort());
  });

  it('answers 409 problem+json when nothing is queued or running, naming how the last execution ended', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'done', command: 'true' })).body;
    const never = (await api('POST', '/api/v1/jobs', { name: 'never', command: 'true' })).body;
    const last = newId();
    wm.handler = (req) => {
      if (req.method !== 'GET' || req.path !== '/api/v1/executions') return undefined;
      const status = req.query.get('status');
      if (status || req.query.get('job_id') !== job.id) return { status: 200, body: [] };
      return { status: 200, body: [{ id: last, job_id: job.id, status: 'completed' }] };
    };
    const r = await api('POST', `/api/v1/jobs/${job.id}/cancel`);
    expect(r.status).toBe(409);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body.detail).toBe(`nothing to cancel: the job's last execution ${last} ended (completed)`);
    const n = await api('POST', `/api/v1/jobs/${never.id}/cancel`);
    expect(n.status).toBe(409);
    expect(n.body.detail).toBe(`nothing to cancel: job ${never.id} has never run`);
  });

  it('answers 404 for an unknown job and 503 when worker-manager is down', async () => {
    expect((await api('POST', `/api/v1/jobs/${newId()}/cancel`)).status).toBe(404);
    const base = env.config('orchestrator');
    const lonely = await startOrchestrator(withWorkerManager(base, await deadUrl()));
    try {
      const job = (await call(lonely.url, 'POST', '/api/v1/jobs', { command: 'true' })).body;
      const r = await call(lonely.url, 'POST', `/api/v1/jobs/${job.id}/cancel`);
      expect(r.status).toBe(503);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect((await call(lonely.url, 'GET', '/health')).status).toBe(200);
    } finally {
      await lonely.stop();
    }
  });
});

describe('restart (contract)', () => {
  it('keeps pipelines, jobs and statuses, and picks up events published while it was down', async () => {
    const p = (await api('POST', '/api/v1/pipelines', { name: 'durable', jobs: [{ name: 'a', command: 'true' }, { name: 'b', command: 'true', depends_on: ['a'] }] })).body;
    const [a, b] = p.jobs;
    await publishStatus({ execution_id: newId(), job_id: a.id, status: 'completed', exit_code: 0, duration_ms: 5 }, true);
    await eventually(jobStatus(a.id, 'completed'));
    await svc.stop();

    // published while no orchestrator runs: the durable consumer delivers it after the restart
    const { connect } = await import('@nats-io/transport-node');
    const { jetstream } = await import('@nats-io/jetstream');
    const nc = await connect({ servers: svc.ctx.config.natsUrl });
    const eid = newId();
    await jetstream(nc).publish(svc.ctx.bus.subjects.executionStatus(eid), encodeJson({ execution_id: eid, job_id: b.id, worker_id: null, status: 'running', timestamp: now() }));
    await nc.close();

    const base = env.config('orchestrator');
    svc = await startOrchestrator(withWorkerManager(base, wm.url));
    const got = await api('GET', `/api/v1/pipelines/${p.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ name: 'durable', jobs: [{ id: a.id, status: 'completed' }, { id: b.id, depends_on: [a.id] }] });
    await eventually(jobStatus(b.id, 'running'));
  });

  it('an event a killed orchestrator had taken and not handled is handled by the next one within seconds', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'taken-by-the-dead', command: 'true' })).body;
    await svc.stop();
    const { connect } = await import('@nats-io/transport-node');
    const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
    const nc = await connect({ servers: svc.ctx.config.natsUrl });
    const { eventsStream } = svc.ctx.bus.subjects;
    try {
      // as an install made before: its consumers waited 30 s for an ack
      await (await jetstreamManager(nc)).consumers.update(eventsStream, 'orchestrator-status', { ack_wait: 30e9 });
      const eid = newId();
      await jetstream(nc).publish(svc.ctx.bus.subjects.executionStatus(eid), encodeJson({ execution_id: eid, job_id: job.id, worker_id: null, status: 'running', timestamp: now() }));
      // the killed orchestrator had taken it (delivered, never acked)
      const taken = await (await jetstream(nc).consumers.get(eventsStream, 'orchestrator-status')).fetch({ max_messages: 1, expires: 5000 });
      for await (const m of taken) expect(m.info.deliveryCount).toBe(1);
    } finally {
      await nc.close();
    }

    const restarted = Date.now();
    svc = await startOrchestrator(withWorkerManager(env.config('orchestrator'), wm.url));
    await eventually(jobStatus(job.id, 'running'), 20_000);
    expect(Date.now() - restarted).toBeLessThan(ACK_WAIT_MS + 5000);
  }, 30_000);

  it('events arriving while the database is down are applied once it is back, their failure said once, not on every redelivery', async () => {
    const job = (await api('POST', '/api/v1/jobs', { name: 'during-an-outage', command: 'true' })).body;
    await svc.stop();
    const said: { level: string; msg: string }[] = [];
    const logger = createLogger('orchestrator', 'silent');
    // what the consumers' child loggers say comes here too
    vi.spyOn(logger, 'child').mockReturnValue(logger as never);
    for (const level of ['error', 'warn', 'info'] as const) {
      vi.spyOn(logger, level).mockImplementation(((...args: unknown[]) => void said.push({ level, msg: String(args.find((a) => typeof a === 'string')) })) as never);
    }
    svc = await startOrchestrator(withWorkerManager(env.config('orchestrator'), wm.url), logger);

    // redelivered every second while the database is down
    await env.databaseDown(async () => {
      await publishStatus({ execution_id: newId(), job_id: job.id, status: 'running', started_at: now() });
      await new Promise((r) => setTimeout(r, 3000));
    });

    await eventually(jobStatus(job.id, 'running'), 20_000);
    const failed = said.filter((s) => s.level === 'error').map((s) => s.msg);
    expect(failed).toContain('handling execution events failed; they will be redelivered (said again only once it has worked)');
    expect(failed).toEqual([...new Set(failed)]);
    // said once the event is acked, a moment after the job's row changed
    await eventually(async () => (said.some((s) => s.msg === 'handling execution events works again') ? true : undefined));
  }, 30_000);
});
