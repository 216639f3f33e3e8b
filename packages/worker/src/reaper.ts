// Kills what is left of executions: SIGTERM to the process group and to every process carrying the
// execution's HODEI_EXECUTION_ID, then SIGKILL after the grace period to whatever remains.
// A cancel signals the processes found by parentage at once (executionTree: a few reads); the scan
// of all of /proc, which also finds those re-parented elsewhere, costs 1-2 ms of blocking file
// reads, so it runs on a small worker thread; scans requested while one is under way are merged
// into the next.
import { Worker } from 'node:worker_threads';
import type { Logger } from '@hodei/platform';
import { executionTree, findExecutionProcesses, outsideGroup, signalGroup, signalPids } from './procs.js';

type Signal = 'SIGTERM' | 'SIGKILL';
const WARM_MS = 1000;

// Plain JS so the thread loads the same way from src (tests) and dist. It mirrors
// findExecutionProcesses() and signals what it finds itself, saving a round trip.
// A busy worker scans after every job, and reading every environ each time cost about 1 ms of CPU
// per job: so the execution id found in each pid's environ (or none) is remembered while scans come
// less than CACHE_MS apart (while jobs run, a refresh every WARM_MS keeps it so, and a cancel reads
// only the processes started since). A pid can only be reused after the kernel has handed out
// every other pid (32,768 by default: far more forks than fit in CACHE_MS), and a pid that left
// the listing is forgotten.
// The one process whose environ changes under a pid is a job's main process (forked by the spawner
// without the id, exec'd with it); it leads the process group, which is signalled as a group.
// A SIGTERM goes once to each process: not to those in the group that got it as a group (pgid), nor
// to those signalled already by parentage (skip). A job that traps it and cleans up would otherwise
// run its handler three times, its cleanup's own children killed by the later ones.
const SCAN_THREAD = `
const { parentPort } = require('node:worker_threads');
const { readdirSync, readFileSync } = require('node:fs');
const CACHE_MS = 3000;
const KEY = Buffer.from('HODEI_EXECUTION_ID=');
let known = new Map();
let lastScan = 0;
function idOf(environ) {
  const at = environ.indexOf(KEY);
  if (at === -1) return '';
  const end = environ.indexOf(0, at);
  return environ.toString('latin1', at + KEY.length, end === -1 ? environ.length : end);
}
parentPort.on('message', ({ seq, targets, signal }) => {
  const found = scan(new Map(targets.map((t) => [t.id, t])), signal);
  if (seq) parentPort.postMessage({ seq, found });
});
function groupOf(pid) {
  try {
    const stat = readFileSync('/proc/' + pid + '/stat', 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch { return undefined; }
}
function signalledAlready(pid, target) {
  return target.skip.includes(pid) || (target.pgid !== null && groupOf(pid) === target.pgid);
}
function scan(wanted, signal) {
  const found = {};
  let entries = [];
  try { entries = readdirSync('/proc'); } catch {}
  const now = Date.now();
  const previous = now - lastScan < CACHE_MS ? known : new Map();
  lastScan = now;
  known = new Map();
  const self = String(process.pid);
  for (const name of entries) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57 || name === self) continue;
    let id = previous.get(name);
    // a remembered match is read again: the process may be a zombie by now (an empty environ)
    if (id === undefined || (id !== '' && wanted.has(id))) {
      let environ;
      try { environ = readFileSync('/proc/' + name + '/environ'); } catch { continue; }
      if (environ.length === 0) continue;
      id = idOf(environ);
    }
    known.set(name, id);
    if (id !== '' && wanted.has(id)) {
      const pid = Number(name);
      (found[id] ??= []).push(pid);
      if (!signalledAlready(pid, wanted.get(id))) try { process.kill(pid, signal); } catch {}
    }
  }
  return found;
}
`;

/** An execution to scan for: `pgid`, when not null, is a group that got the signal as a group, and
 *  `skip` the pids signalled already; neither gets it again. */
interface ScanTarget {
  id: string;
  pgid: number | null;
  skip: number[];
}

interface Pending {
  targets: Map<string, ScanTarget>;
  resolvers: Array<(found: Map<string, number[]>) => void>;
}

export class Reaper {
  private kills = new Map<NodeJS.Timeout, { executionId: string; pgid: number | undefined }>();
  private thread: Worker | undefined;
  private threadFailed = false;
  private closed = false;
  private inFlight = new Map<number, { targets: ScanTarget[]; signal: Signal; resolve: (found: Map<string, number[]>) => void }>();
  private nextSeq = 1;
  /** Per signal: ids waiting for the next scan. */
  private queued = new Map<Signal, Pending>();
  private scanning = new Set<Signal>();
  private warmTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly graceMs: number,
    private readonly logger: Logger,
    /** The pid that adopts the orphans of jobs (the spawner process), if any. */
    private readonly subreaper: () => number | undefined = () => undefined,
  ) {
    this.ensureThread(); // started now: the first cancel must not wait ~30 ms for a thread to boot
  }

  /** Cancel / timeout: SIGTERM everything of the execution now, SIGKILL after the grace period. */
  terminate(executionId: string, pgid: number | undefined): void {
    if (this.killScheduled(executionId, pgid)) return; // a second cancel, or a cancel after the timeout
    const group = signalGroup(pgid, 'SIGTERM');
    // measured on a 2-core VM: the descendants that left the group went 5-10 ms later when they
    // waited for the scan thread
    const outside = outsideGroup(executionTree(executionId, pgid, this.subreaper()), group ? pgid : undefined);
    signalPids(outside, 'SIGTERM');
    void this.scan(executionId, 'SIGTERM', { pgid: group ? pgid! : null, skip: outside });
    this.scheduleKill(executionId, pgid);
  }

  /** After the main process exited: whatever it left behind goes too. */
  cleanup(executionId: string, pgid: number | undefined): void {
    if (this.killScheduled(executionId, pgid)) return; // terminated: what is left has had its SIGTERM, and its SIGKILL is due
    // found before the group's SIGTERM, which ends most of them before the scan reads /proc
    const orphans = executionTree(executionId, undefined, this.subreaper());
    const group = signalGroup(pgid, 'SIGTERM');
    const outside = outsideGroup(orphans, group ? pgid : undefined);
    signalPids(outside, 'SIGTERM');
    void this.scan(executionId, 'SIGTERM', { pgid: group ? pgid! : null, skip: outside }).then((found) => {
      const pids = [...new Set([...orphans, ...found])].sort((a, b) => a - b);
      if (!group && pids.length === 0) return;
      if (pids.length) this.logger.info({ execution_id: executionId, leftover_pids: pids }, 'terminating processes the job left behind');
      // what is left of the group does not carry HODEI_EXECUTION_ID (env -i), or ended meanwhile
      else this.logger.info({ execution_id: executionId, process_group: pgid }, "terminating the job's process group: its main process exited, some of it did not");
      this.scheduleKill(executionId, pgid);
    });
  }

  /** Worker exit: the pending SIGKILLs happen now rather than leave processes behind. */
  killPendingNow(): void {
    const ids: string[] = [];
    for (const [timer, { executionId, pgid }] of this.kills) {
      clearTimeout(timer);
      signalGroup(pgid, 'SIGKILL');
      ids.push(executionId);
    }
    this.kills.clear();
    for (const pids of findExecutionProcesses(ids).values()) signalPids(pids, 'SIGKILL');
  }

  /** While jobs run, the scan thread refreshes what it knows of /proc every WARM_MS, so that a
   *  cancel reads only the processes started since. */
  keepWarm(on: boolean): void {
    if (on && !this.warmTimer) {
      this.warmTimer = setInterval(() => this.thread?.postMessage({ seq: 0, targets: [], signal: null }), WARM_MS);
      this.warmTimer.unref();
    } else if (!on && this.warmTimer) {
      clearInterval(this.warmTimer);
      this.warmTimer = undefined;
    }
  }

  async close(): Promise<void> {
    this.keepWarm(false);
    this.closed = true;
    const thread = this.thread;
    this.thread = undefined;
    if (thread) await thread.terminate();
  }

  /** Terminated already: its processes have had their SIGTERM (a pgid not known then, while it
   *  was spawning, is none of them), and their SIGKILL is due. */
  private killScheduled(executionId: string, pgid: number | undefined): boolean {
    for (const kill of this.kills.values()) if (kill.executionId === executionId && kill.pgid === pgid) return true;
    return false;
  }

  private scheduleKill(executionId: string, pgid: number | undefined): void {
    const timer = setTimeout(() => {
      this.kills.delete(timer);
      signalGroup(pgid, 'SIGKILL');
      void this.scan(executionId, 'SIGKILL', { pgid: null, skip: [] }).then((pids) => {
        if (pids.length > 0) this.logger.warn({ execution_id: executionId, pids }, 'SIGKILL to processes that ignored SIGTERM');
      });
    }, this.graceMs);
    this.kills.set(timer, { executionId, pgid });
  }

  /** Finds the execution's processes and sends `signal` to those it has not reached yet; resolves
   *  with all their pids. */
  private scan(executionId: string, signal: Signal, reached: Omit<ScanTarget, 'id'>): Promise<number[]> {
    return new Promise((resolve) => {
      let pending = this.queued.get(signal);
      if (!pending) {
        pending = { targets: new Map(), resolvers: [] };
        this.queued.set(signal, pending);
      }
      const earlier = pending.targets.get(executionId);
      pending.targets.set(executionId, {
        id: executionId,
        pgid: reached.pgid ?? earlier?.pgid ?? null,
        skip: [...(earlier?.skip ?? []), ...reached.skip],
      });
      pending.resolvers.push((found) => resolve(found.get(executionId) ?? []));
      this.pump(signal);
    });
  }

  private pump(signal: Signal): void {
    if (this.scanning.has(signal)) return;
    const pending = this.queued.get(signal);
    if (!pending) return;
    this.queued.delete(signal);
    this.scanning.add(signal);
    void this.scanTargets([...pending.targets.values()], signal).then((found) => {
      this.scanning.delete(signal);
      for (const r of pending.resolvers) r(found);
      this.pump(signal);
    });
  }

  private scanTargets(targets: ScanTarget[], signal: Signal): Promise<Map<string, number[]>> {
    const thread = this.ensureThread();
    if (!thread) return Promise.resolve(scanInline(targets, signal));
    const seq = this.nextSeq++;
    return new Promise((resolve) => {
      this.inFlight.set(seq, { targets, signal, resolve });
      thread.postMessage({ seq, targets, signal });
    });
  }

  private ensureThread(): Worker | undefined {
    if (this.thread || this.threadFailed || this.closed) return this.thread;
    try {
      const thread = new Worker(SCAN_THREAD, { eval: true });
      thread.unref();
      thread.on('message', ({ seq, found }: { seq: number; found: Record<string, number[]> }) => {
        const request = this.inFlight.get(seq);
        this.inFlight.delete(seq);
        request?.resolve(new Map(Object.entries(found)));
      });
      thread.on('error', (err) => this.onThreadDown(err));
      thread.on('exit', () => this.onThreadDown(undefined));
      this.thread = thread;
    } catch (err) {
      this.onThreadDown(err);
    }
    return this.thread;
  }

  /** Without the thread, scans run inline: slower for the event loop, never skipped. */
  private onThreadDown(err: unknown): void {
    if (err) this.logger.error({ err }, 'process scan thread failed; scanning inline');
    this.threadFailed = true;
    this.thread = undefined;
    const waiting = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const { targets, signal, resolve } of waiting) resolve(scanInline(targets, signal));
  }
}

function scanInline(targets: ScanTarget[], signal: Signal): Map<string, number[]> {
  const found = findExecutionProcesses(targets.map((t) => t.id));
  for (const { id, pgid, skip } of targets) {
    const pids = (found.get(id) ?? []).filter((pid) => !skip.includes(pid));
    signalPids(outsideGroup(pids, pgid ?? undefined), signal);
  }
  return found;
}
