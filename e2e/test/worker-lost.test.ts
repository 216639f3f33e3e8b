// A worker killed with SIGKILL mid-job: its job's processes die with it, its execution becomes lost
// and, with max_retries 1, runs again on another worker and completes (never twice at once).
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infra } from '../src/context.js';
import { call, eventually } from '../src/http.js';
import { startStack, type Stack } from '../src/stack.js';

let stack: Stack;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
let failed = false;
const mark = join(tmpdir(), `hodei-e2e-mark-${randomBytes(4).toString('hex')}`);
const wm = (m: string, p: string, b?: unknown) => call(stack.urls['worker-manager'], m, p, b);

beforeAll(async () => {
  const i = infra();
  stack = await startStack({ databaseUrl: i.databaseUrl, natsUrl: i.natsUrl });
});

afterAll(async () => {
  if (failed && stack) process.stderr.write(`${stack.logTail(20)}\n`);
  // should the first attempt's process have outlived its killed worker (the test then failed)
  if (existsSync(`${mark}.pid`)) {
    const pid = Number(readFileSync(`${mark}.pid`, 'utf8').trim());
    if (pid > 1) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  rmSync(mark, { force: true });
  rmSync(`${mark}.pid`, { force: true });
  await stack?.stop();
});

describe('a worker killed mid-job', () => {
  it("the job's processes die with the worker, the execution is lost, then retried on another worker where it completes", async (ctx) => {
    ctx.onTestFailed(() => void (failed = true));
    const first = await stack.startWorker({ name: 'e2e-doomed', slots: 1 });
    // first attempt: leaves a mark and hangs; the retry finds the mark and finishes at once
    const command = `if [ -e "$MARK" ]; then echo retried; else echo $$ > "$MARK.pid"; touch "$MARK"; echo first; sleep 60; fi`;
    const ex = await wm('POST', '/api/v1/execute', { name: 'e2e-retry', command, env: { MARK: mark }, max_retries: 1, retry_backoff_seconds: 1 });
    expect(ex.status).toBe(202);
    await eventually(async () => {
      const e = (await wm('GET', `/api/v1/executions/${ex.body.id}`)).body;
      return e?.status === 'running' && e.worker_id === first.id && e.log_lines >= 1 ? true : undefined;
    }, 30_000, 'the first attempt running on the doomed worker');
    const second = await stack.startWorker({ name: 'e2e-rescuer', slots: 1 });

    const jobPid = Number(readFileSync(`${mark}.pid`, 'utf8').trim());
    expect(alive(jobPid)).toBe(true);
    process.kill(first.pid, 'SIGKILL');
    // its spawner takes the job with it (SIGTERM; the shell's sleep ends with it)
    await eventually(async () => (alive(jobPid) ? undefined : true), 10_000, "the first attempt's shell to die with its worker");

    const lost = await eventually(async () => {
      const e = (await wm('GET', `/api/v1/executions/${ex.body.id}`)).body;
      return e?.status === 'lost' ? e : undefined;
    }, 30_000, 'the first attempt to be lost');
    expect(lost.attempt).toBe(1);
    expect((await call(stack.urls.scheduler, 'GET', `/api/v1/workers/${first.id}`)).body.status).toBe('offline');

    const retry = await eventually(async () => {
      const list = (await wm('GET', `/api/v1/executions?limit=100`)).body as { id: string; retry_of: string | null; status: string }[];
      const r = list.find((x) => x.retry_of === ex.body.id);
      return r && r.status === 'completed' ? r : undefined;
    }, 60_000, 'a retry of the lost execution to complete');
    const full = (await wm('GET', `/api/v1/executions/${retry.id}`)).body;
    expect(full).toMatchObject({ attempt: 2, retry_of: ex.body.id, worker_id: second.id, status: 'completed', exit_code: 0 });
    const lines = (await wm('GET', `/api/v1/executions/${retry.id}/logs`)).body.lines.map((l: { line: string }) => l.line);
    expect(lines).toEqual(['retried']);
  });
});
