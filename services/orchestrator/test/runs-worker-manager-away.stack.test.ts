// A job of a pipeline run that becomes ready while worker-manager is unavailable (its NATS cut: it
// answers 503 with Retry-After; or stopped: connection refused) waits in `starting`, saying why, and
// starts once worker-manager is back: each job executed once, also across an orchestrator restart.
// Unavailable for longer than HODEI_PIPELINE_START_WAIT_MS, the job fails naming the cause.
// Real orchestrator, scheduler, worker-manager and a worker agent of the test's own (on NATS
// directly, so neither cut nor stopped with worker-manager); worker-manager reaches NATS through a
// link the test cuts.
import { forwardTcp, freePort, newId, workerOnline, type TcpForwarder } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../../../packages/worker/test/harness.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { startOrchestrator } from '../src/service.js';
import { call, eventually, runEnded } from './helpers.js';
import { startRealStack, stopRealStack, type RealStack } from './real-stack.js';

let stack: RealStack | undefined;
let agent: AgentProcess | undefined;
let link: TcpForwarder | undefined;
let linkPort: number;
let natsUrl: URL;

beforeAll(async () => {
  stack = await startRealStack('wm-away', {
    worker: false,
    workerManagerNatsFor: async (url) => {
      natsUrl = new URL(url);
      linkPort = await freePort();
      link = await forwardTcp(linkPort, natsUrl);
      return `nats://127.0.0.1:${linkPort}`;
    },
  });
  const workerId = newId();
  agent = startAgentProcess(stack.env.natsPrefix, workerId, { HODEI_SCHEDULER_URL: stack.scheduler.url, LOG_LEVEL: 'warn' });
  await workerOnline(stack.scheduler.url, workerId, 30_000);
}, 90_000);

afterAll(async () => {
  if (agent) {
    agent.proc.kill('SIGTERM');
    await agent.exit;
  }
  if (stack) await stopRealStack(stack);
  await link?.close();
}, 60_000);

const s = () => stack!;
const api = (method: string, path: string, body?: unknown) => call(s().orchestrator.url, method, path, body);
const execution = async (id: string) => (await call(s().workerManager.url, 'GET', `/api/v1/executions/${id}`)).body;
const executionsOf = async (jobId: string) => ((await call(s().workerManager.url, 'GET', `/api/v1/executions?job_id=${jobId}`)).body as Array<{ id: string }>).map((e) => e.id);
const logLines = async (executionId: string) => (await call(s().workerManager.url, 'GET', `/api/v1/executions/${executionId}/logs`)).body.lines.map((l: { line: string }) => l.line);
const runJob = async (runId: string, name: string) => (await api('GET', `/api/v1/pipeline-runs/${runId}`)).body.jobs.find((j: { name: string }) => j.name === name);

/** Runs `a` (a second long) then `b`; resolves with the run's id and the jobs' ids once `a` runs. */
async function runWhileARuns(name: string): Promise<{ runId: string; ids: Record<string, string> }> {
  const p = await api('POST', '/api/v1/pipelines', { name, jobs: [{ name: 'a', command: 'sleep 1; echo a' }, { name: 'b', command: 'echo b', depends_on: ['a'] }] });
  expect(p.status).toBe(201);
  const ids = Object.fromEntries(p.body.jobs.map((j: { name: string; id: string }) => [j.name, j.id]));
  const r = await api('POST', `/api/v1/pipelines/${p.body.id}/runs`);
  expect(r.status).toBe(202);
  const a = r.body.jobs.find((j: { name: string }) => j.name === 'a').execution_id;
  await eventually(async () => ((await execution(a)).status === 'running' ? true : undefined), 30_000);
  return { runId: r.body.id, ids };
}

async function cutBus(): Promise<void> {
  await link!.close();
  await eventually(async () => (s().workerManager.ctx.bus.link.up ? undefined : true), 10_000);
}

async function restoreBus(): Promise<void> {
  link = await forwardTcp(linkPort, natsUrl);
  await eventually(async () => (s().workerManager.ctx.bus.link.up ? true : undefined), 30_000);
}

/** `b` of the run once it waits for worker-manager: `starting`, no execution, a message. */
const bWaiting = (runId: string) =>
  eventually(async () => {
    const b = await runJob(runId, 'b');
    return b.status === 'starting' && b.message ? b : undefined;
  }, 30_000);

/** The run completed, each job executed exactly once, `b` printed its line. */
async function completedOnce(runId: string, ids: Record<string, string>): Promise<void> {
  const run = await runEnded(s().orchestrator.url, runId, 90_000);
  const jobs = Object.fromEntries(run.jobs.map((j: { name: string }) => [j.name, j]));
  expect({ run: run.status, a: jobs.a.status, b: jobs.b.status, message: jobs.b.message }).toEqual({ run: 'completed', a: 'completed', b: 'completed', message: null });
  for (const name of ['a', 'b']) expect(await executionsOf(ids[name]!), name).toEqual([jobs[name].execution_id]);
  // the run follows the worker's events; worker-manager records the execution ended once its lines
  // are stored (just restarted, its log consumer may take a moment)
  await eventually(async () => ((await execution(jobs.b.execution_id)).status === 'completed' ? true : undefined), 30_000);
  expect(await logLines(jobs.b.execution_id)).toEqual(['b']);
}

describe('a job that becomes ready while worker-manager is unavailable', () => {
  it('its NATS away (503): the job waits, saying why, also across an orchestrator restart, and starts once it is back', async () => {
    const { runId, ids } = await runWhileARuns('bus-away');
    await cutBus();
    try {
      const b = await bWaiting(runId);
      expect(b.execution_id).toBeNull();
      expect(b.message).toMatch(/^worker-manager unavailable, retrying every 5 s for up to 5 min: http:\/\/127\.0\.0\.1:\d+\/api\/v1\/execute answered 503: the message bus \(NATS\) is unavailable/);
      expect((await api('GET', `/api/v1/pipeline-runs/${runId}`)).body.status).toBe('running');
      expect(await executionsOf(ids.b!)).toEqual([]);
      await s().orchestrator.stop();
      s().orchestrator = await startOrchestrator(s().configs.orchestrator);
      expect((await runJob(runId, 'b')).status).toBe('starting');
    } finally {
      await restoreBus();
    }
    await completedOnce(runId, ids);
  }, 150_000);

  it('itself stopped (connection refused) and started again: the job waits, then starts once', async () => {
    const { runId, ids } = await runWhileARuns('wm-restart');
    await s().workerManager.stop();
    try {
      // `a` ends meanwhile, and `b` finds nobody listening
      const b = await bWaiting(runId);
      expect(b.message).toMatch(/^worker-manager unavailable, retrying every 5 s for up to 5 min: http:\/\/127\.0\.0\.1:\d+ did not answer \(connection refused\)$/);
    } finally {
      s().workerManager = await startWorkerManager(s().configs['worker-manager']);
    }
    await completedOnce(runId, ids);
  }, 150_000);

  it('unavailable for longer than HODEI_PIPELINE_START_WAIT_MS: the job fails naming the cause, and never starts', async () => {
    await s().orchestrator.stop();
    s().orchestrator = await startOrchestrator({ ...s().configs.orchestrator, pipelineStartWaitMs: 3000 });
    const { runId, ids } = await runWhileARuns('bus-away-long');
    await cutBus();
    try {
      const waiting = await bWaiting(runId);
      expect(waiting.message).toMatch(/^worker-manager unavailable, retrying every 5 s for up to 3 s: /);
      const run = await runEnded(s().orchestrator.url, runId, 30_000);
      expect(run.status).toBe('failed');
      const b = run.jobs.find((j: { name: string }) => j.name === 'b');
      expect(b).toMatchObject({ status: 'failed', execution_id: null });
      expect(b.message).toMatch(
        /^could not start: worker-manager was unavailable for over 3 s \(HODEI_PIPELINE_START_WAIT_MS\): http:\/\/127\.0\.0\.1:\d+\/api\/v1\/execute answered 503: the message bus \(NATS\) is unavailable/,
      );
    } finally {
      await restoreBus();
    }
    // worker-manager back: the failed job stays failed and is not started
    await new Promise((r) => setTimeout(r, 6000));
    expect(await executionsOf(ids.b!)).toEqual([]);
    expect((await api('GET', `/api/v1/pipeline-runs/${runId}`)).body.status).toBe('failed');
  }, 120_000);
});
