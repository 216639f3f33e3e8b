// Workers outlive a kill -9 of worker-manager; the next run adopts them: DELETE drains or
// force-stops them, their death is noticed, and a graceful stop of the service stops them (drain,
// then force: a job still running ends `cancelled`).
// Force-stopping a worker mid-job ends the job `cancelled` and leaves none of its processes.
// A SIGTERM'd worker-manager is gone within HODEI_SHUTDOWN_TIMEOUT_MS, leaving a worker still
// killing its jobs to finish on its own. An adopted agent's output still reaches the log.
// worker-manager runs as a real process here (services/worker-manager/dist/main.js) so it can be
// killed with SIGKILL.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createTestEnv, serviceAddresses, workerOnline, type RunningService, type TestEnv } from '@hodei/platform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startScheduler } from '../../scheduler/src/service.js';
import { agentLogPath } from '../src/workers/agent-log.js';
import { call, executeOn, finishedOn, getExecutionOn, until } from './helpers.js';

const WM_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const KILL_GRACE_MS = 1000;

let env: TestEnv;
let sched: RunningService;
let wmUrl: string;
let wmEnv: Record<string, string>;
let logDir: string;
let wm: { proc: ChildProcess; exited: Promise<number | null> } | undefined;
const workerPids: number[] = [];

/** Gone, or a zombie nobody reaped yet: either way no longer running. */
const processGone = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z');
  } catch {
    return true;
  }
};

/** Live processes whose environment carries HODEI_EXECUTION_ID=<id>. */
function processesOf(executionId: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/environ`, 'latin1').split('\0').includes(`HODEI_EXECUTION_ID=${executionId}`) && !processGone(Number(name))) found.push(Number(name));
    } catch {
      // ended meanwhile, or not ours to read
    }
  }
  return found;
}

const wmLog = () => join(logDir, 'worker-manager.log');

async function startWm(extraEnv: Record<string, string> = {}): Promise<void> {
  const fd = openSync(wmLog(), 'a');
  const proc = spawn(process.execPath, [WM_MAIN], { env: { ...wmEnv, ...extraEnv }, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  wm = { proc, exited };
  await until(async () => (await fetch(`${wmUrl}/health`).catch(() => undefined))?.ok, 60_000, 'worker-manager to answer /health');
}

async function killWm(): Promise<void> {
  wm?.proc.kill('SIGKILL');
  await wm?.exited;
  wm = undefined;
}

async function startWorker(pool: string) {
  const res = await call(wmUrl, 'POST', '/api/v1/workers', { type: 'shell', labels: { pool } });
  expect(res.status).toBe(201);
  const w = (await res.json()) as { id: string; pid: number };
  workerPids.push(w.pid);
  await workerOnline(sched.url, w.id, 15_000);
  return w;
}

const workerRow = async (id: string) => (await (await call(wmUrl, 'GET', `/api/v1/workers/${id}`)).json()) as { status: string; pid: number };
const schedulerStatus = async (id: string) => ((await (await fetch(`${sched.url}/api/v1/workers/${id}`)).json()) as { status: string }).status;

/** A job that ignores SIGTERM and leaves a background and a setsid child behind. */
const STUBBORN = 'trap "" TERM; (sleep 301 &); setsid sleep 302 & for i in $(seq 1 100); do echo f-$i; sleep 0.2; done';

async function forceStopMidJob(w: { id: string; pid: number }, pool: string) {
  const e = await executeOn(wmUrl, { command: STUBBORN, labels: { pool } });
  await until(async () => (await getExecutionOn(wmUrl, e.id)).status === 'running' && processesOf(e.id).length >= 3, 10_000, 'the job and its children');
  const res = await call(wmUrl, 'DELETE', `/api/v1/workers/${w.id}?force=true`);
  expect(res.status).toBe(200);
  expect(await res.json()).toMatchObject({ id: w.id, status: 'stopped' });
  expect(processGone(w.pid)).toBe(true);
  const done = await finishedOn(wmUrl, e.id, 15_000);
  expect(done.status).toBe('cancelled');
  expect(processesOf(e.id)).toEqual([]);
}

beforeAll(async () => {
  env = createTestEnv();
  logDir = mkdtempSync(join(tmpdir(), 'hodei-wm-restart-'));
  const { ports, urls } = await serviceAddresses();
  const common = { urls, heartbeatIntervalMs: 300, heartbeatTimeoutMs: 3000, killGraceMs: KILL_GRACE_MS };
  sched = await startScheduler(env.config('scheduler', { ...common, port: ports.scheduler }));
  wmUrl = urls['worker-manager'];
  wmEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    DATABASE_URL: env.databaseUrl,
    NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
    HODEI_NATS_PREFIX: env.natsPrefix,
    HODEI_WORKER_MANAGER_PORT: String(ports['worker-manager']),
    HODEI_ORCHESTRATOR_URL: urls.orchestrator,
    HODEI_SCHEDULER_URL: urls.scheduler,
    HODEI_WORKER_MANAGER_URL: urls['worker-manager'],
    HODEI_HEARTBEAT_INTERVAL_MS: '300',
    HODEI_HEARTBEAT_TIMEOUT_MS: '3000',
    HODEI_KILL_GRACE_MS: String(KILL_GRACE_MS),
    LOG_LEVEL: 'info',
  };
  await startWm();
}, 120_000);

afterAll(async () => {
  await killWm();
  for (const pid of workerPids) if (!processGone(pid)) process.kill(pid, 'SIGKILL');
  await sched?.stop();
  await env?.cleanup();
  rmSync(logDir, { recursive: true, force: true });
}, 60_000);

describe('force stop during a job', () => {
  it('of a worker this run started: the job ends cancelled, none of its processes is left', async () => {
    await forceStopMidJob(await startWorker('fresh'), 'fresh');
  }, 40_000);
});

describe('workers of a worker-manager killed with SIGKILL are adopted by the next run', () => {
  let drained: { id: string; pid: number };
  let dies: { id: string; pid: number };
  let forced: { id: string; pid: number };
  let last: { id: string; pid: number };

  beforeAll(async () => {
    drained = await startWorker('drained');
    dies = await startWorker('dies');
    forced = await startWorker('forced');
    last = await startWorker('last');
    await killWm();
    for (const w of [drained, dies, forced, last]) expect(processGone(w.pid)).toBe(false);
    await startWm();
  }, 120_000);

  it('DELETE drains it: the answer says so, the process exits, the record ends stopped', async () => {
    const res = await call(wmUrl, 'DELETE', `/api/v1/workers/${drained.id}`);
    expect([200, 202]).toContain(res.status);
    expect(['draining', 'stopped']).toContain(((await res.json()) as { status: string }).status);
    await until(async () => (await workerRow(drained.id)).status === 'stopped', 10_000, 'the record to say stopped');
    expect(processGone(drained.pid)).toBe(true);
    await until(async () => (await schedulerStatus(drained.id)) !== 'online', 10_000, 'the scheduler to see it leave');
  }, 30_000);

  it('its death is noticed: exited in worker-manager, offline in the scheduler', async () => {
    process.kill(dies.pid, 'SIGKILL');
    await until(async () => (await workerRow(dies.id)).status === 'exited', 5000, 'the record to say exited');
    await until(async () => (await schedulerStatus(dies.id)) === 'offline', 5000, 'offline in the scheduler');
  }, 30_000);

  it('DELETE ?force=true during a job: the job ends cancelled, none of its processes is left', async () => {
    await forceStopMidJob(forced, 'forced');
  }, 40_000);

  it('a graceful stop of worker-manager drains it, then force-stops it: its job ends cancelled', async () => {
    const e = await executeOn(wmUrl, { command: 'sleep 60', labels: { pool: 'last' } });
    await until(async () => (await getExecutionOn(wmUrl, e.id)).status === 'running', 10_000, 'running');
    wm!.proc.kill('SIGTERM');
    expect(await wm!.exited).toBe(0);
    wm = undefined;
    expect(processGone(last.pid)).toBe(true);
    expect(processesOf(e.id)).toEqual([]);
    await startWm();
    expect(await workerRow(last.id)).toMatchObject({ status: 'stopped' });
    expect((await finishedOn(wmUrl, e.id, 10_000)).status).toBe('cancelled');
  }, 60_000);
});

describe('SIGTERM: worker-manager is gone within HODEI_SHUTDOWN_TIMEOUT_MS', () => {
  const SHUTDOWN_TIMEOUT_MS = 4000;
  const AGENT_KILL_GRACE_MS = 6000;

  it('when its workers\' force stop takes longer, it exits 0 in time and the worker finishes on its own', async () => {
    await killWm();
    await startWm({ HODEI_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), HODEI_KILL_GRACE_MS: String(AGENT_KILL_GRACE_MS) });
    const w = await startWorker('deadline');
    const e = await executeOn(wmUrl, { command: 'trap "" TERM; sleep 60', labels: { pool: 'deadline' } });
    await until(async () => (await getExecutionOn(wmUrl, e.id)).status === 'running', 10_000, 'running');
    const t0 = performance.now();
    wm!.proc.kill('SIGTERM');
    const code = await wm!.exited;
    const elapsed = performance.now() - t0;
    wm = undefined;
    // the platform's own deadline exits 1 at SHUTDOWN_TIMEOUT_MS: 0 means the shutdown ended itself
    expect(code).toBe(0);
    expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + 1000);
    // the agent was told to force-stop: its job gets SIGKILL after the agent's kill grace
    expect(processGone(w.pid)).toBe(false);
    await startWm();
    expect((await finishedOn(wmUrl, e.id, AGENT_KILL_GRACE_MS + 10_000)).status).toBe('cancelled');
    await until(async () => processGone(w.pid), 10_000, 'the agent to exit');
    expect(processesOf(e.id)).toEqual([]);
    await until(async () => ['stopped', 'exited'].includes((await workerRow(w.id)).status), 5000, 'the record to say it ended');
  }, 60_000);
});

describe('an adopted agent whose output pipe would have no reader', () => {
  it('lives on, and what it writes reaches the next worker-manager\'s log', async () => {
    // any write of the agent that is not pino's (pino drops EPIPE): a Node warning, its spawner's stderr
    const preload = join(logDir, 'chatter.mjs');
    writeFileSync(preload, "setInterval(() => process.stderr.write(`chatter ${process.env.HODEI_WORKER_ID ?? 'service'}\\n`), 50).unref();\n");
    await killWm();
    await startWm({ NODE_OPTIONS: `--import ${pathToFileURL(preload).href}` });
    const w = await startWorker('chatty');
    await killWm();
    const from = statSync(wmLog()).size;
    await new Promise((r) => setTimeout(r, 1000)); // twenty writes with nobody reading the pipe
    expect(processGone(w.pid)).toBe(false);
    await startWm();
    const logged = async () => readFileSync(wmLog(), 'utf8').slice(from).split('\n').filter((l) => l.includes(`"worker_id":"${w.id}"`));
    await until(async () => (await logged()).some((l) => l.includes(`chatter ${w.id}`)), 5000, "the adopted agent's output in the log");
    const res = await call(wmUrl, 'DELETE', `/api/v1/workers/${w.id}`);
    expect([200, 202]).toContain(res.status);
    await until(async () => (await workerRow(w.id)).status === 'stopped', 10_000, 'the record to say stopped');
    expect((await logged()).some((l) => l.includes('worker stopped'))).toBe(true);
    expect(existsSync(agentLogPath(w.id))).toBe(false);
  }, 60_000);

  it('one that died while no worker-manager ran is recorded exited, and its log file removed', async () => {
    const w = await startWorker('dies-unwatched');
    expect(existsSync(agentLogPath(w.id))).toBe(true);
    await killWm();
    process.kill(w.pid, 'SIGKILL');
    await until(async () => processGone(w.pid), 5000, 'the agent to die');
    await startWm();
    expect(await workerRow(w.id)).toMatchObject({ status: 'exited' });
    expect(existsSync(agentLogPath(w.id))).toBe(false);
  }, 60_000);
});

describe('a temp dir where the agent log cannot be made', () => {
  it('POST /workers is a 503 saying so, and the service goes on answering', async () => {
    await killWm();
    await startWm({ TMPDIR: '/proc/nonexistent' });
    const res = await call(wmUrl, 'POST', '/api/v1/workers', { type: 'shell' });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { detail: string }).detail).toMatch(/^the worker's log file could not be created: ENOENT/);
    expect((await fetch(`${wmUrl}/health`)).status).toBe(200);
    await killWm();
    await startWm();
  }, 30_000);
});
