// Failover (issue 4): with a 1 s heartbeat, `kill -9` of a worker running a job with max_retries 1
// → the worker is offline (target ≤ 3 s) → the retried execution runs on another worker (≤ 5 s).
//
//   tsx failover.ts [--rounds 3] [--json]
//
// Two ways a worker dies, each measured --rounds times:
//   managed    a worker worker-manager started (POST /api/v1/workers): its exit is seen at once
//   heartbeat  a worker started on its own (as on another host): only its missing heartbeats tell,
//              HODEI_HEARTBEAT_TIMEOUT_MS (3 × interval) plus the check interval (timeout / 2)
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { call, quantile, root, startStack, until, type Stack } from './failure-stack.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } } });
const rounds = Number(values.rounds);
const HEARTBEAT_MS = 1000;

interface Round {
  mode: 'managed' | 'heartbeat';
  offline_ms: number;
  lost_ms: number;
  retry_running_ms: number;
  retry_worker_differs: boolean;
}

const external: ChildProcess[] = [];

/** A worker agent started by this script, as on another host: worker-manager does not watch it. */
async function startExternalWorker(stack: Stack, labels: Record<string, string>): Promise<{ id: string; pid: number }> {
  const id = randomUUID();
  const child = spawn(process.execPath, [resolve(root, 'packages/worker/dist/main.js')], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      HODEI_WORKER_ID: id,
      HODEI_WORKER_LABELS: JSON.stringify(labels),
      HODEI_WORKER_SLOTS: '2',
      NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
      HODEI_NATS_PREFIX: stack.env.natsPrefix,
      HODEI_SCHEDULER_URL: stack.scheduler,
      HODEI_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  external.push(child);
  await until(async () => (await call(stack.scheduler, 'GET', `/api/v1/workers/${id}`)).body?.status === 'online', 30_000, 'external worker online', 50);
  return { id, pid: child.pid! };
}

async function round(stack: Stack, mode: Round['mode'], n: number): Promise<Round> {
  const labels = { pool: `${mode}-${n}` };
  const start = mode === 'managed' ? (l: typeof labels) => stack.startWorker(l, 1) : (l: typeof labels) => startExternalWorker(stack, l);
  const workers = [await start(labels), await start(labels)];
  const e = await call(stack.wm, 'POST', '/api/v1/execute', { command: 'sleep 2', labels, max_retries: 1, retry_backoff_seconds: 0 });
  if (e.status !== 202) throw new Error(`POST /api/v1/execute: ${e.status} ${JSON.stringify(e.body)}`);
  const running = await until(async () => {
    const x = (await call(stack.wm, 'GET', `/api/v1/executions/${e.body.id}`)).body;
    return x.status === 'running' && x;
  }, 30_000, 'execution running');
  const victim = workers.find((w) => w.id === running.worker_id)!;
  const killedAt = performance.now();
  process.kill(victim.pid, 'SIGKILL');
  let offline = NaN;
  let lost = NaN;
  let retryId: string | undefined;
  const retry = await until(
    async () => {
      const now = () => performance.now() - killedAt;
      if (Number.isNaN(offline)) {
        const w = (await call(stack.scheduler, 'GET', `/api/v1/workers/${victim.id}`)).body;
        if (w.status !== 'online' && w.status !== 'draining') offline = now();
      }
      if (!retryId) {
        const x = (await call(stack.wm, 'GET', `/api/v1/executions/${e.body.id}`)).body;
        if (x.status === 'lost' && Number.isNaN(lost)) lost = now();
        retryId = /retried as ([0-9a-f-]{36})/.exec(x.message ?? '')?.[1];
      }
      if (retryId) {
        const r = (await call(stack.wm, 'GET', `/api/v1/executions/${retryId}`)).body;
        if (r.status !== 'queued') return { at: now(), worker: r.worker_id as string, status: r.status as string };
      }
      return null;
    },
    30_000,
    'the retry to run',
    5,
  );
  if (retry.status !== 'running' && retry.status !== 'completed') throw new Error(`the retry ended ${retry.status}`);
  if (Number.isNaN(offline)) {
    await until(async () => (await call(stack.scheduler, 'GET', `/api/v1/workers/${victim.id}`)).body.status !== 'online', 10_000, 'offline');
    offline = performance.now() - killedAt;
  }
  const other = workers.find((w) => w !== victim)!;
  if (mode === 'managed') await call(stack.wm, 'DELETE', `/api/v1/workers/${other.id}?force=true`);
  else process.kill(other.pid, 'SIGTERM');
  return { mode, offline_ms: Math.round(offline), lost_ms: Math.round(lost), retry_running_ms: Math.round(retry.at), retry_worker_differs: retry.worker !== victim.id };
}

const stack = await startStack({ heartbeatIntervalMs: HEARTBEAT_MS, heartbeatTimeoutMs: 3 * HEARTBEAT_MS, killGraceMs: 500 });
const results: Round[] = [];
try {
  for (const mode of ['managed', 'heartbeat'] as const) {
    for (let i = 0; i < rounds; i++) {
      const r = await round(stack, mode, i);
      results.push(r);
      process.stderr.write(`${mode} #${i + 1}: offline ${r.offline_ms} ms, lost ${r.lost_ms} ms, retry running ${r.retry_running_ms} ms\n`);
    }
  }
} finally {
  for (const c of external) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await stack.close();
}

const summary = (['managed', 'heartbeat'] as const).map((mode) => {
  const rs = results.filter((r) => r.mode === mode);
  return {
    mode,
    rounds: rs.length,
    offline_ms: { p50: quantile(rs.map((r) => r.offline_ms), 0.5), max: Math.max(...rs.map((r) => r.offline_ms)) },
    retry_running_ms: { p50: quantile(rs.map((r) => r.retry_running_ms), 0.5), max: Math.max(...rs.map((r) => r.retry_running_ms)) },
    retry_on_another_worker: rs.every((r) => r.retry_worker_differs),
  };
});
if (values.json) process.stdout.write(`${JSON.stringify({ heartbeat_ms: HEARTBEAT_MS, summary, results })}\n`);
else {
  process.stdout.write(`failover, heartbeat ${HEARTBEAT_MS} ms, time-out ${3 * HEARTBEAT_MS} ms (targets: offline ≤ 3000 ms, retry running ≤ 5000 ms)\n`);
  for (const s of summary) {
    process.stdout.write(
      `  ${s.mode.padEnd(9)} offline p50 ${s.offline_ms.p50} ms max ${s.offline_ms.max} ms | retry running p50 ${s.retry_running_ms.p50} ms max ${s.retry_running_ms.max} ms | on another worker: ${s.retry_on_another_worker}\n`,
    );
  }
}
