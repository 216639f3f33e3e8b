// `hodei workers …`: worker processes started and stopped by the worker-manager.
import type { Command } from 'commander';
import { ManagedWorker, RegistryWorker, WorkerStatusView } from '@hodei/types';
import { context } from '../context.js';
import { ApiError, CliError, UnreachableError } from '../errors.js';
import type { HodeiClient } from '../http.js';
import { labelsText, statusText, when, type Output } from '../output.js';
import { formatBytes, formatDuration } from '../parse.js';
import { resolveWorker } from '../resources.js';
import { listAll } from '../resolve.js';

export const list = async (f: { status?: string; limit: number }, cmd: Command) => {
  const { client, out } = context(cmd);
  const { items } = await client.list('worker-manager', '/api/v1/workers', ManagedWorker, { status: f.status, limit: f.limit });
  if (out.json) return out.printJson(items);
  out.table(
    ['ID', 'NAME', 'STATUS', 'PID', 'SLOTS', 'CPU', 'MEMORY', 'LABELS', 'STARTED'],
    items.map((w) => [
      w.id,
      w.name ?? '-',
      statusText(out.out, w.status),
      w.pid === null ? '-' : String(w.pid),
      String(w.capacity.slots),
      String(w.capacity.cpu_cores),
      formatBytes(w.capacity.memory_bytes),
      labelsText(w.labels),
      when(w.started_at),
    ]),
    'no workers started by the worker-manager',
  );
  if (f.status === undefined) await noteAgents(client, out);
};

/**
 * Under the list: the agents started with `hodei worker`, which run executions too but are known only
 * to the scheduler's registry (a user saw `no workers` while jobs ran). Nothing when it does not answer.
 */
async function noteAgents(client: HodeiClient, out: Output): Promise<void> {
  const [registry, managed] = await Promise.all([
    listAll(client, 'scheduler', '/api/v1/workers', RegistryWorker).catch(() => []),
    listAll(client, 'worker-manager', '/api/v1/workers', ManagedWorker.pick({ id: true })).catch(() => null),
  ]);
  if (!managed) return;
  const ids = new Set(managed.map((w) => w.id));
  const agents = registry.filter((w) => !ids.has(w.id) && w.status !== 'stopped');
  if (agents.length === 0) return;
  const named = agents.map((w) => `${w.name ?? w.id} (${w.status}, ${w.capacity.slots} slots)`).join(', ');
  out.note(out.err('gray', `and ${agents.length} agent${agents.length === 1 ? '' : 's'} started with hodei worker (in the scheduler's registry): ${named}`));
}

export const show = async (id: string, _f: unknown, cmd: Command) => {
  const { client, out } = context(cmd);
  const wid = await resolveWorker(client, id);
  const [w, s] = await Promise.all([
    client.get('worker-manager', `/api/v1/workers/${wid}`, ManagedWorker),
    client.get('worker-manager', `/api/v1/workers/${wid}/status`, WorkerStatusView),
  ]);
  if (out.json) return out.printJson({ ...w, running_executions: s.running_executions, last_heartbeat_at: s.last_heartbeat_at, uptime_seconds: s.uptime_seconds });
  out.fields([
    ['id', w.id],
    ['name', w.name ?? '-'],
    ['status', statusText(out.out, w.status)],
    ['pid', w.pid === null ? '-' : String(w.pid)],
    ['host', w.host ?? '-'],
    ['capacity', `${w.capacity.slots} slots, ${w.capacity.cpu_cores} cpu, ${formatBytes(w.capacity.memory_bytes)}`],
    ['labels', labelsText(w.labels)],
    ['running', s.running_executions.join(', ') || 'nothing'],
    ['heartbeat', when(s.last_heartbeat_at)],
    ['uptime', formatDuration(s.uptime_seconds * 1000)],
    ['started', when(w.started_at)],
    ...(w.stopped_at ? ([['stopped', when(w.stopped_at)]] as [string, string][]) : []),
    ...(w.status === 'exited' || w.status === 'stopped' ? ([['ended', ended(w)]] as [string, string][]) : []),
  ]);
};

/** How a worker's process ended, and that it is gone. */
function ended(w: ManagedWorker): string {
  const how = w.signal ? `killed by ${w.signal}` : w.exit_code !== null ? `exit code ${w.exit_code}` : 'how is unknown';
  return `${how}; gone (forgotten after HODEI_FORGET_WORKERS_AFTER_MS, 24 h by default)`;
}

/** How long `workers start` waits for the new worker to register with the scheduler (the agent
 *  retries its registration with back-off while the scheduler does not answer). */
const ONLINE_TIMEOUT_MS = 30_000;
const ONLINE_POLL_MS = 100;

export const start = async (f: { name?: string; slots?: number; cpu?: number; memory?: number; label?: Record<string, string>; wait: boolean }, cmd: Command) => {
  const { client, out } = context(cmd);
  const capacity: Record<string, number> = {};
  if (f.slots !== undefined) capacity.slots = f.slots;
  if (f.cpu !== undefined) capacity.cpu_cores = f.cpu;
  if (f.memory !== undefined) capacity.memory_bytes = f.memory;
  let w = await client.send('worker-manager', 'POST', '/api/v1/workers', ManagedWorker, {
    type: 'shell',
    name: f.name,
    labels: f.label,
    capacity: Object.keys(capacity).length ? capacity : undefined,
  });
  if (f.wait) w = await untilOnline(client, w);
  if (out.json) return out.printJson(w);
  out.line(`worker ${w.id} ${f.wait ? 'online' : w.status}${w.pid ? ` (pid ${w.pid})` : ''}`);
};

/** Waits until the scheduler lists the new worker online, so that work placed right after reaches
 *  it; fails when its process exits first or it has not registered within ONLINE_TIMEOUT_MS. */
async function untilOnline(client: HodeiClient, started: ManagedWorker): Promise<ManagedWorker> {
  const deadline = Date.now() + ONLINE_TIMEOUT_MS;
  for (;;) {
    const registered = await client.get('scheduler', `/api/v1/workers/${started.id}`, RegistryWorker).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 404) return null;
      if (err instanceof UnreachableError) throw new CliError(`worker ${started.id} started, but ${err.message}: whether it registered is unknown`, 2);
      throw err;
    });
    const w = await client.get('worker-manager', `/api/v1/workers/${started.id}`, ManagedWorker);
    if (registered?.status === 'online') return w;
    if (w.status === 'exited' || w.status === 'stopped') {
      const how = w.signal ? `signal ${w.signal}` : `exit code ${w.exit_code ?? 'unknown'}`;
      throw new CliError(`worker ${w.id} ${w.status} (${how}) before it registered with the scheduler: its output is in the worker-manager's log`);
    }
    if (Date.now() >= deadline) {
      throw new CliError(
        `worker ${w.id} (pid ${w.pid ?? '-'}) has not registered with the scheduler within ${ONLINE_TIMEOUT_MS / 1000}s; ` +
          `it goes on trying (the worker-manager's log says why it fails): stop it with hodei workers stop ${w.id}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, ONLINE_POLL_MS));
  }
}

export const stop = async (id: string, f: { force?: boolean }, cmd: Command) => {
  const { client, out } = context(cmd);
  const wid = await resolveWorker(client, id, { preferLive: true });
  const res = await client.request('worker-manager', 'DELETE', `/api/v1/workers/${wid}`, null, { query: { force: f.force ? 'true' : undefined } });
  if (out.json) return out.printJson(res.data ?? { id: wid });
  const status = (res.data as { status?: string } | undefined)?.status ?? 'stopping';
  out.line(`worker ${wid} ${status}`);
};
