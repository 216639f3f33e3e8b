// A firing due while worker-manager restarts (connection refused, or 503 while it cannot reach the
// orchestrator) starts once worker-manager takes it: it is not recorded failed and lost. What may
// have started something (a 500) is not sent again.
import { createServer, type Server } from 'node:http';
import { createTestEnv, newId, type RunningService, type TestEnv } from '@hodei/platform';
import type { ScheduleRun } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deadUrl, fakeWorkerManager, type FakeWorkerManager } from '../../orchestrator/test/helpers.js';
import { startScheduler } from '../src/service.js';
import { until } from './helpers.js';

let env: TestEnv;
let svc: RunningService;
let orchestrator: FakeWorkerManager;
let wmUrl: string;
/** worker-manager's stand-in: it listens on wmUrl only once a test says so. */
let workerManager: Server;
/** What the stand-in answers to execute, by job (then 202); the job of each execute it got. */
const answers = new Map<string, number[]>();
const executes: string[] = [];
const executeCalls = (jobId: string) => executes.filter((j) => j === jobId).length;

async function listen(): Promise<void> {
  if (workerManager.listening) return;
  await new Promise<void>((resolve) => workerManager.listen(Number(new URL(wmUrl).port), '127.0.0.1', resolve));
}

beforeAll(async () => {
  env = createTestEnv();
  orchestrator = await fakeWorkerManager((req) =>
    req.method === 'GET' && req.path.startsWith('/api/v1/jobs/') ? { status: 200, body: { id: req.path.split('/').at(-1) } } : undefined,
  );
  workerManager = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const jobId = (JSON.parse(Buffer.concat(chunks).toString() || '{}') as { job_id?: string }).job_id ?? '';
      if (req.url === '/api/v1/execute') executes.push(jobId);
      const status = answers.get(jobId)?.shift() ?? 202;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status === 202 ? { id: newId(), job_id: jobId, status: 'queued', created_at: new Date().toISOString() } : { title: 'stand-in', detail: `answers ${status}` }));
    });
  });
  wmUrl = await deadUrl();
  const base = env.config('scheduler');
  svc = await startScheduler({ ...base, urls: { ...base.urls, orchestrator: orchestrator.url, 'worker-manager': wmUrl } });
});

afterAll(async () => {
  await svc?.stop();
  await orchestrator?.close();
  if (workerManager?.listening) await new Promise((r) => workerManager.close(r));
  await env?.cleanup();
});

const schedule = async (jobId: string): Promise<string> => {
  const res = await fetch(`${svc.url}/api/v1/schedules`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ job_id: jobId, run_at: new Date(Date.now() + 500).toISOString() }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
};
const runs = async (id: string): Promise<ScheduleRun[]> => (await fetch(`${svc.url}/api/v1/schedules/${id}/runs`)).json();
const ended = (id: string) => until(() => runs(id), (r) => r.length === 1 && r[0]!.outcome !== 'pending', 15_000);

it('a firing that finds worker-manager not listening starts once it listens again', async () => {
  const jobId = newId();
  const id = await schedule(jobId);
  await until(() => runs(id), (r) => r.length === 1, 10_000); // claimed while nothing listens
  await new Promise((r) => setTimeout(r, 1500)); // and worker-manager stays away for a moment more
  await listen();
  const [run] = await ended(id);
  expect(run).toMatchObject({ outcome: 'fired', message: null });
  expect(run!.execution_id).toEqual(expect.any(String));
  expect(executeCalls(jobId)).toBe(1);
}, 30_000);

it('a firing that worker-manager answers 503 (it cannot reach the orchestrator) starts once it answers 202, exactly once', async () => {
  await listen();
  const jobId = newId();
  answers.set(jobId, [503, 503]);
  const [run] = await ended(await schedule(jobId));
  expect(run).toMatchObject({ outcome: 'fired' });
  expect(executeCalls(jobId)).toBe(3);
}, 30_000);

it('a firing answered 500 (it may have started something) is recorded failed, not sent again', async () => {
  await listen();
  const jobId = newId();
  answers.set(jobId, [500]);
  const [run] = await ended(await schedule(jobId));
  expect(run).toMatchObject({ outcome: 'failed', execution_id: null });
  expect(run!.message).toContain('answered 500');
  expect(executeCalls(jobId)).toBe(1);
}, 30_000);
