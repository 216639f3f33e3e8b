// A worker agent killed while NATS is down: the scheduler, cut off from NATS too, hears no heartbeat
// from anyone, so that silence says nothing and the worker stays online. Deregistered then (its
// operator knows it is gone), a cancel meanwhile ends one of its executions instead of answering 503
// for ever, and the other's `lost` is published once NATS is back. NATS here is this file's own
// nats-server, killed and restarted; the shared one is never touched. The cancelled execution belongs
// to a job: the orchestrator learns of the cancel once NATS is back.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, freePort, newId, pidGone, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import type { Execution } from '@hodei/types';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../../../packages/worker/test/harness.js';
import { startOrchestrator } from '../../orchestrator/src/service.js';
import { startWorkerManager } from '../../worker-manager/src/service.js';
import { call, executeOn, getExecutionOn, until } from '../../worker-manager/test/helpers.js';
import { startScheduler } from '../src/service.js';

const TIMEOUT_MS = 1000;

let natsProc: ChildProcess | undefined;
let natsPort: number;
let natsDir: string;
let scratch: string;
let env: TestEnv;
let sched: RunningService;
let orch: RunningService;
let wm: RunningService;
let agent: AgentProcess;
const workerId = newId();

async function startNats(): Promise<void> {
  natsProc = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', natsDir], {
    stdio: 'ignore',
    env: { PATH: `${process.env.PATH}:/usr/sbin:/usr/local/bin` },
  });
  const listening = () =>
    new Promise<boolean>((resolve) => {
      const sock = tcpConnect(natsPort, '127.0.0.1');
      sock.once('connect', () => (sock.destroy(), resolve(true)));
      sock.once('error', () => resolve(false));
    });
  await until(listening, 20_000, 'nats-server to listen');
}

async function killNats(): Promise<void> {
  const p = natsProc!;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await gone;
}


beforeAll(async () => {
  natsPort = await freePort();
  natsDir = mkdtempSync(join(tmpdir(), 'hodei-nats-outage-'));
  scratch = mkdtempSync(join(tmpdir(), 'hodei-nats-outage-jobs-'));
  await startNats();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  env = createTestEnv();
  const { ports, urls } = await serviceAddresses();
  const common = { urls, natsUrl, heartbeatIntervalMs: 200, heartbeatTimeoutMs: TIMEOUT_MS };
  sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  orch = await startOrchestrator(env.config('orchestrator', { ...common, port: ports.orchestrator }));
  wm = await startWorkerManager(env.config('worker-manager', { ...common, port: ports['worker-manager'] }));
  agent = startAgentProcess(env.natsPrefix, workerId, {
    NATS_URL: natsUrl,
    HODEI_SCHEDULER_URL: sched.url,
    HODEI_WORKER_LABELS: 'pool=ext',
    HODEI_HEARTBEAT_INTERVAL_MS: '200',
    HODEI_KILL_GRACE_MS: '300',
  });
  await workerOnline(sched.url, workerId, 20_000);
}, 60_000);

afterAll(async () => {
  agent?.proc.kill('SIGKILL');
  // were the agent's jobs to outlive it, they end here
  for (const f of ['a', 'b'].map((n) => join(scratch, n)).filter(existsSync)) {
    const pid = Number(readFileSync(f, 'utf8').trim());
    if (pid && !pidGone(pid)) process.kill(pid, 'SIGKILL');
  }
  await wm?.stop();
  await orch?.stop();
  await sched?.stop();
  if (natsProc && natsProc.exitCode === null && natsProc.signalCode === null) await killNats();
  await env?.cleanup();
  rmSync(natsDir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

const workerStatus = async () => ((await (await call(sched.url, 'GET', `/api/v1/workers/${workerId}`)).json()) as { status: string }).status;

it("a worker gone while NATS is down stays online; deregistered, a cancel meanwhile ends one execution, and the other's `lost` is published when NATS is back", async () => {
  const command = (name: string) => `echo $$ > ${join(scratch, name)}; exec sleep 120`;
  const a = await executeOn(wm.url, { command: command('a'), labels: { pool: 'ext' }, max_retries: 0 });
  const job = await call(orch.url, 'POST', '/api/v1/jobs', { name: 'outage-b', command: command('b'), labels: { pool: 'ext' } });
  expect(job.status).toBe(201);
  const jobId = ((await job.json()) as { id: string }).id;
  const b = await executeOn(wm.url, { job_id: jobId });
  for (const e of [a, b]) await until(async () => (await getExecutionOn(wm.url, e.id)).status === 'running', 15_000, `${e.id} running`);

  await killNats();
  agent.proc.kill('SIGKILL');
  await agent.exit;
  // the scheduler hears no heartbeat from anyone: that silence is not the worker's
  await new Promise((r) => setTimeout(r, 2 * TIMEOUT_MS));
  expect(await workerStatus()).toBe('online');
  expect((await call(sched.url, 'DELETE', `/api/v1/workers/${workerId}`)).status).toBe(200);

  // nothing answers for the worker, and the registry says it is gone: the cancel ends the execution
  const cancel = await call(wm.url, 'POST', `/api/v1/executions/${b.id}/cancel`);
  const cancelled = (await cancel.json()) as Execution;
  expect(cancel.status).toBe(202);
  expect(cancelled).toMatchObject({ id: b.id, status: 'cancelled', message: expect.stringContaining(`its worker ${workerId} is stopped and silent`) });
  expect(await getExecutionOn(wm.url, b.id)).toMatchObject({ status: 'cancelled' });

  await startNats();
  const lost = await until(async () => {
    const e = await getExecutionOn(wm.url, a.id);
    return e.status !== 'running' && e;
  }, 30_000, 'the execution of the gone worker to end');
  expect(lost).toMatchObject({ status: 'lost', worker_id: workerId, message: `worker ${workerId} was deregistered and sent no heartbeat for ${TIMEOUT_MS} ms` });
  // the cancel stands, its job learnt it once NATS took the announcement, and the registry holds
  // nothing on the worker any more
  expect(await getExecutionOn(wm.url, b.id)).toMatchObject({ status: 'cancelled' });
  await until(async () => ((await (await call(orch.url, 'GET', `/api/v1/jobs/${jobId}`)).json()) as { status: string }).status === 'cancelled', 30_000, "the job's status cancelled in the orchestrator");
  const w = await until(async () => {
    const r = (await (await call(sched.url, 'GET', `/api/v1/workers/${workerId}`)).json()) as { running_executions: string[] };
    return r.running_executions.length === 0 && r;
  }, 10_000, 'the worker to hold nothing');
  expect(w).toMatchObject({ status: 'stopped', running_executions: [] });
}, 90_000);
