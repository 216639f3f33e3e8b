// Placement: waiting executions (priority DESC, created_at ASC) onto online workers whose labels
// and free capacity fit. One round at a time in this process; the claim (waiting → assigning) is a
// conditional UPDATE, so two replicas never hand out the same execution.
import { Batcher, contextFromTraceparent, RecentSet, decodeJson, encodeJson, FailureLog, publishTraced, traceField, traceHeaders, withSpan, type Bus, type Logger } from '@hodei/platform';
import { AssignmentAck, type Assignment, type WorkerControl, type ExecutionQueuedEvent, type ExecutionStatusEvent, type RegistryWorker } from '@hodei/types';
import { RequestError } from '@nats-io/transport-node';
import type { Counter } from 'prom-client';
import { entryOf, queueOrder, type EntryKind, type QueueEntry, type QueueStore, type Stored } from './store/queue.js';
import type { WorkerStore } from './store/workers.js';

const ROUND_LIMIT = 1000;
/**
 * A round after a finish or an arrival reads only the head of the queue: with a backlog, reading
 * (and re-checking) every waiting entry each time a slot frees made a round cost 10–40 ms. When
 * the head does not fill every free slot, the round reads on up to ROUND_LIMIT; the safety tick
 * and worker changes ask for a full round, which also refreshes every waiting reason.
 */
const HEAD_LIMIT = 16;
const ASSIGN_TIMEOUT_MS = 2000;
/** How long a worker that did not answer (or refused an entry) is passed over. */
const UNRESPONSIVE_MS = 3000;
const REFUSED_MS = 2000;
const REFUSED_FULL_MS = 100;
const EPSILON = 1e-9;
const SEEN_REMEMBERED = 10_000;
const CLAIMED: Promise<Stored> = Promise.resolve({ stored: true, known: null });
/** How long a round's view of free capacity may place arrivals without a round. */
const VIEW_MS = 1000;
/**
 * "All workers busy" is announced only for entries that have waited this long: under a backlog
 * nearly every entry waits a moment for a slot, and announcing each one cost a row update, an
 * event and worker-manager's update per job. The safety tick's full round announces the rest.
 */
const BUSY_ANNOUNCE_MS = 1000;
/**
 * How long an execution waiting for room holds every worker it fits; after that, only the one
 * with the most free slots. It starts on the first worker that drains (a stream of small jobs on
 * the others no longer starves it), and long jobs on every worker it fits do not keep small jobs
 * off all of them for as long as they run.
 */
const HOLD_ALL_MS = 10_000;

interface WaitReason {
  reason: string;
  /** `busy`: every fitting worker is busy; `retrying`: none took it yet; `lasting`: no online
   *  worker can ever take it (labels, size), so a free slot is of no use to it. */
  kind: 'busy' | 'retrying' | 'lasting';
}

interface Slot {
  worker: RegistryWorker;
  slots: number;
  cpu: number;
  memory: number;
  /** Held for an earlier entry that fits this worker once enough of it frees: nothing after that
   *  entry is placed here (else a stream of small executions starves a large one for ever). */
  heldFor?: string;
}

/** The workers with what a plan left free on them. */
const withFree = (slots: Slot[]): RegistryWorker[] =>
  slots.map((s) => ({ ...s.worker, free: { slots: s.slots, cpu_cores: s.cpu, memory_bytes: s.memory } }));

const labelsMatch = (want: Record<string, string>, have: Record<string, string>) =>
  Object.entries(want).every(([k, v]) => have[k] === v);

type Size = { cpu_cores: number; memory_bytes: number };
/** A worker of this capacity can ever run the entry (not counting what runs on it now). */
const largeEnough = (capacity: Size, e: Size) => capacity.cpu_cores + EPSILON >= e.cpu_cores && capacity.memory_bytes >= e.memory_bytes;

/** b has more room left than a: more free slots, then more free cpu. */
const roomier = (a: Slot, b: Slot) => b.slots > a.slots || (b.slots === a.slots && b.cpu > a.cpu);

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Exact in the largest unit that divides it (`1536 MiB`), unless that takes five digits or more
 *  (`--memory 1000GB` was `976562500 KiB`): then rounded, with the bytes (`931.3 GiB (1000000000000 bytes)`). */
function formatBytes(bytes: number): string {
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i += 1;
  }
  if (n < 10_000) return `${n} ${UNITS[i]}`;
  for (n = bytes, i = 0; n >= 1024 && i < UNITS.length - 1; i += 1) n /= 1024;
  return `${n.toFixed(1)} ${UNITS[i]} (${bytes} bytes)`;
}

/** What a waiting reason depends on. */
type Waiter = Pick<QueueEntry, 'execution_id' | 'cpu_cores' | 'memory_bytes'> & { spec: { labels: Record<string, string> } };

const needs = (e: Waiter) => `needs 1 slot, ${e.cpu_cores} cpu_cores, ${formatBytes(e.memory_bytes)} memory`;

const labelList = (labels: Record<string, string>) => {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return `${pairs.length === 1 ? 'label' : 'labels'} ${pairs.join(', ')}`;
};

/** What an entry needs that none of `workers` (those with its labels) has: the resource short on all of them and the most any has. */
function shortfall(e: Waiter, workers: RegistryWorker[], withLabels: string): string {
  const maxCpu = Math.max(...workers.map((w) => w.capacity.cpu_cores));
  const maxMemory = Math.max(...workers.map((w) => w.capacity.memory_bytes));
  const cpuShort = maxCpu + EPSILON < e.cpu_cores;
  const memoryShort = maxMemory < e.memory_bytes;
  const cpu = `${e.cpu_cores} cpu_cores`;
  const memory = `${formatBytes(e.memory_bytes)} memory`;
  const have = `the workers${withLabels} have at most`;
  if (cpuShort && memoryShort) return `needs ${cpu} and ${memory}, ${have} ${maxCpu} cpu_cores and ${formatBytes(maxMemory)}`;
  if (cpuShort) return `needs ${cpu}, ${have} ${maxCpu}`;
  if (memoryShort) return `needs ${memory}, ${have} ${formatBytes(maxMemory)}`;
  return `needs ${cpu} and ${memory} on one worker, and no worker${withLabels} has both`;
}

export class Placer {
  private running = false;
  private again = false;
  private fullWanted = true;
  private stopped = false;
  private ready = false;
  /** The last round left no free slot on any online worker: an arrival alone cannot be placed. */
  private saturated = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly unresponsive = new Map<string, number>();
  private readonly refused = new Map<string, number>();
  /** Queued events whose insert is still in flight: the next round reads them from here, not back from the table. */
  private arrivals: { entry: QueueEntry; inserted: Promise<boolean> }[] = [];
  /**
   * The free capacity the last round left, while it left nothing waiting: an arrival that fits it
   * is stored already claimed for its worker, without a round (no reads, no separate claim: about
   * 2 ms less from execute to a running process). Dropped whenever capacity may have changed in a
   * way it does not know; a stale view costs only a refusal by the worker, which re-places the entry.
   */
  private view: { workers: RegistryWorker[]; at: number } | null = null;
  /** Arrivals and confirmations of one moment share a statement. */
  private readonly inserts: Batcher<{ event: ExecutionQueuedEvent; claimFor?: string }, Stored>;
  /** Executions this process has seen queued (the latest SEEN_REMEMBERED): a copy of the event never takes the fast path. */
  private readonly seen = new RecentSet<string>(SEEN_REMEMBERED);
  /** Fast-path claims being stored: a round reads capacity only once they are (else it would
   *  count their slots free, over-fill the worker and have the assignment refused). */
  private readonly fastClaims = new Set<Promise<Stored>>();
  private readonly confirms: Batcher<{ execution_id: string; worker_id: string }>;
  private readonly failures: FailureLog;
  /** Since when each execution waiting for room has held workers (the rounds that read it). */
  private holding = new Map<string, number>();

  constructor(
    private readonly bus: Bus,
    private readonly queue: QueueStore,
    private readonly workers: WorkerStore,
    private readonly placements: Counter<'outcome'>,
    private readonly logger: Logger,
  ) {
    this.inserts = new Batcher((items) => queue.enqueue(items));
    this.confirms = new Batcher((pairs) => queue.confirm(pairs));
    this.failures = new FailureLog(logger, 'placement round');
  }

  /** Placement starts only once the event consumers have caught up (no placing of replayed, finished work). */
  setReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.kick();
  }

  /**
   * Stores a queued execution and places it. The insert runs alongside the round's reads (one
   * database round trip less on the latency path); resolves once the entry is stored.
   */
  async admit(ev: ExecutionQueuedEvent, firstDelivery = false): Promise<boolean> {
    const entry = entryOf(ev);
    const fresh = firstDelivery && !this.seen.has(entry.execution_id);
    this.seen.add(entry.execution_id);
    const worker = fresh && this.ready && !this.stopped ? this.fitsView(entry) : undefined;
    if (worker) {
      // the assignment goes out while the claimed row is being stored
      const claimed = this.inserts.add({ event: ev, claimFor: worker.id });
      this.fastClaims.add(claimed);
      void claimed.then(
        () => this.fastClaims.delete(claimed),
        () => this.fastClaims.delete(claimed),
      );
      this.track(this.assign(entry, worker.id, claimed));
      return claimed.then((r) => r.stored);
    }
    const inserted = this.inserts.add({ event: ev }).then((r) => r.stored);
    if (this.ready && !this.stopped) {
      this.arrivals.push({ entry, inserted });
      // behind a backlog, arrivals wait for the round a finish (or the safety tick) brings
      if (!this.saturated) this.kick(false);
    }
    return inserted;
  }

  /**
   * Asks for a round; rounds never overlap, and a kick during one runs another right after.
   * `full`: read every waiting entry (worker set changed, safety tick), not only the queue's head.
   */
  kick(full = true): void {
    if (full) {
      this.fullWanted = true;
      this.view = null;
    }
    this.saturated = false;
    if (!this.ready || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    // the events handled in this turn of the event loop (finishes, arrivals) share one round
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.round();
          this.failures.worked();
        } catch (err) {
          this.failures.failed(err);
        }
      } while (this.again && !this.stopped);
    } finally {
      this.running = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.inFlight]);
  }

  private async round(): Promise<void> {
    if (this.fastClaims.size) await Promise.allSettled([...this.fastClaims]);
    const arrivals = this.arrivals.splice(0);
    const limit = this.fullWanted ? ROUND_LIMIT : HEAD_LIMIT;
    this.fullWanted = false;
    const [head, active, fresh] = await Promise.all([
      this.queue.waiting(limit),
      this.workers.active(),
      Promise.all(arrivals.map((a) => a.inserted.catch(() => false))),
    ]);
    const online = active.filter((w) => w.status === 'online');
    const draining = active.filter((w) => w.status === 'draining');
    const now = Date.now();
    /** The stored entries plus the fresh arrivals; after a truncated read, only arrivals that sort
     *  before its last entry (one behind it must not overtake the unread entries ahead of it). */
    const withArrivals = (stored: QueueEntry[], truncated: boolean): QueueEntry[] => {
      const entries = [...stored];
      const known = new Set(stored.map((e) => e.execution_id));
      const last = stored.at(-1);
      arrivals.forEach((a, i) => {
        if (!fresh[i] || known.has(a.entry.execution_id)) return;
        if (truncated && last && queueOrder(a.entry, last) > 0) return;
        entries.push(a.entry);
      });
      if (arrivals.length) entries.sort(queueOrder);
      return entries;
    };
    const truncated = head.length === limit && limit < ROUND_LIMIT;
    const freeSlots = (p: { slots: Slot[] }) => p.slots.filter((s) => s.slots >= 1 && !s.heldFor);
    let read = head;
    let plan = this.plan(withArrivals(head, truncated), online, now, draining);
    /** Every waiting entry was read (the fast path relies on knowing them all). */
    let complete = head.length < limit;
    // Only the head was read and a slot is still free: what waits behind the head may fit it.
    if (truncated && freeSlots(plan).length) {
      read = await this.queue.waiting(ROUND_LIMIT);
      complete = read.length < ROUND_LIMIT;
      plan = this.plan(withArrivals(read, false), online, now, draining);
    }
    // A slot is still free after ROUND_LIMIT entries that nothing fits now (a thousand for a label
    // no worker has): the entries further back that it fits are read too, else they would wait
    // behind those for ever.
    const free = complete ? [] : freeSlots(plan);
    let further: QueueEntry[] = [];
    if (free.length && read.length === ROUND_LIMIT) {
      const fitting = free.map((s) => ({ labels: s.worker.labels, cpu_cores: s.cpu, memory_bytes: s.memory }));
      further = await this.queue.waitingFitting(read.at(-1)!.execution_id, fitting, ROUND_LIMIT);
      if (further.length) plan = this.plan([...withArrivals(read, true), ...further], online, now, draining);
    }
    const { chosen, waiting } = plan;
    this.rememberHolds(plan, complete, now);
    this.saturated = online.length > 0 && plan.slots.every((s) => s.slots < 1);
    this.view =
      complete && waiting.every((w) => w.kind === 'lasting') && this.arrivals.length === 0
        ? { workers: withFree(plan.slots), at: now }
        : null;

    if (chosen.length) {
      const claimed = await this.queue.claim(chosen.map((c) => ({ execution_id: c.entry.execution_id, worker_id: c.worker.id })));
      for (const c of chosen) {
        if (!claimed.has(c.entry.execution_id)) continue;
        this.track(this.assign(c.entry, c.worker.id));
      }
    }
    const changed = waiting.filter(
      (w) => w.entry.waiting_reason !== w.reason && (w.kind !== 'busy' || now - w.entry.created_ms >= BUSY_ANNOUNCE_MS),
    );
    if (changed.length) await this.announceWaiting(changed);
    if (limit === ROUND_LIMIT && read.length === ROUND_LIMIT) {
      await this.explainTheRest(read.at(-1)!.execution_id, further.map((e) => e.execution_id), online, draining, now);
    }
    this.forgetExpired(now);
  }

  /** The worker the last round's view has room on for this entry (taken from the view), if any. */
  private fitsView(entry: QueueEntry): RegistryWorker | undefined {
    const view = this.view;
    const now = Date.now();
    if (!view || this.running || this.arrivals.length || now - view.at > VIEW_MS) return undefined;
    const { chosen, slots } = this.plan([entry], view.workers, now);
    const worker = chosen[0]?.worker;
    if (!worker) return undefined;
    view.workers = withFree(slots);
    return worker;
  }

  private track(p: Promise<void>): void {
    const tracked = p.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Best-fit of the entries (in queue order) onto the free capacity of the online workers. */
  private plan(entries: QueueEntry[], online: RegistryWorker[], now: number, draining: RegistryWorker[] = []) {
    const slots: Slot[] = online
      .filter((w) => (this.unresponsive.get(w.id) ?? 0) <= now)
      .map((w) => ({ worker: w, slots: w.free.slots, cpu: w.free.cpu_cores, memory: w.free.memory_bytes }));
    const chosen: { entry: QueueEntry; worker: RegistryWorker }[] = [];
    const waiting: ({ entry: QueueEntry } & WaitReason)[] = [];
    const held = new Set<string>();
    for (const entry of entries) {
      let best: Slot | undefined;
      let behindHeld = false;
      for (const s of slots) {
        if (s.slots < 1 || s.cpu + EPSILON < entry.cpu_cores || s.memory < entry.memory_bytes) continue;
        if (!labelsMatch(entry.spec.labels, s.worker.labels)) continue;
        if (this.refusedBy(entry, s.worker.id, now)) continue;
        if (s.heldFor) {
          behindHeld = true;
          continue;
        }
        // a retry goes back to a worker an earlier attempt ran on only when no other one fits
        const avoided = (w: Slot) => entry.avoid_workers.includes(w.worker.id);
        if (best && avoided(best) !== avoided(s)) {
          if (avoided(s)) continue;
          best = s;
          continue;
        }
        if (!best || roomier(best, s)) best = s;
      }
      if (best) {
        best.slots -= 1;
        best.cpu -= entry.cpu_cores;
        best.memory -= entry.memory_bytes;
        chosen.push({ entry, worker: best.worker });
      } else {
        const why = behindHeld
          ? { reason: `the worker with room is held for an earlier execution (${needs(entry)})`, kind: 'busy' as const }
          : this.whyWaiting(entry, online, draining, now);
        if (why.kind === 'busy' && this.hold(entry, slots, now)) held.add(entry.execution_id);
        waiting.push({ entry, ...why });
      }
    }
    return { chosen, waiting, slots, entries, held };
  }

  /** Keeps when each holding entry began to hold; forgets those a round read that hold nothing, and after a round that read every entry, those it did not read. */
  private rememberHolds(plan: { entries: QueueEntry[]; held: Set<string> }, complete: boolean, now: number): void {
    const next = complete ? new Map<string, number>() : this.holding;
    for (const { execution_id: id } of plan.entries) {
      if (plan.held.has(id)) next.set(id, this.holding.get(id) ?? now);
      else next.delete(id);
    }
    this.holding = next;
  }

  /**
   * Holds, for an entry that only waits for capacity to free, the workers it fits once enough of
   * them frees: all of them for its first HOLD_ALL_MS of holding, then the one with the most free
   * slots. Whether it held any.
   */
  private hold(entry: QueueEntry, slots: Slot[], now: number): boolean {
    const fitting = slots.filter(
      (s) =>
        !s.heldFor &&
        labelsMatch(entry.spec.labels, s.worker.labels) &&
        largeEnough(s.worker.capacity, entry) &&
        !this.refusedBy(entry, s.worker.id, now),
    );
    const since = this.holding.get(entry.execution_id) ?? now;
    const chosen = now - since < HOLD_ALL_MS || !fitting.length ? fitting : [fitting.reduce((a, b) => (roomier(a, b) ? b : a))];
    for (const s of chosen) s.heldFor = entry.execution_id;
    return chosen.length > 0;
  }

  /** The worker refused this execution a moment ago: it is not offered to it again yet. */
  private refusedBy(entry: Pick<Waiter, 'execution_id'>, workerId: string, now: number): boolean {
    return (this.refused.get(`${entry.execution_id}:${workerId}`) ?? 0) > now;
  }

  /** `draining`: workers that take no new work; when only they have the entry's labels, it says so. */
  private whyWaiting(entry: Waiter, online: RegistryWorker[], draining: RegistryWorker[], now: number): WaitReason {
    const lasting = (reason: string): WaitReason => ({ reason, kind: 'lasting' });
    const want = Object.entries(entry.spec.labels);
    if (!online.length && !draining.length) return lasting(want.length ? `no online worker (it needs one with ${labelList(entry.spec.labels)})` : 'no online worker');
    if (!online.length && !want.length) return lasting('every worker is draining');
    const labelled = online.filter((w) => labelsMatch(entry.spec.labels, w.labels));
    if (!labelled.length) {
      const has = (workers: RegistryWorker[], [k, v]: [string, string]) => workers.some((w) => w.labels[k] === v);
      const nowhere = want.find((l) => !has(online, l) && !has(draining, l));
      if (nowhere) return lasting(`no worker with label ${nowhere[0]}=${nowhere[1]}`);
      if (draining.some((w) => labelsMatch(entry.spec.labels, w.labels))) return lasting(`every worker with ${labelList(entry.spec.labels)} is draining`);
      const onlyDraining = want.find((l) => !has(online, l));
      if (onlyDraining) return lasting(`every worker with label ${onlyDraining[0]}=${onlyDraining[1]} is draining`);
      return lasting(`no worker with ${labelList(entry.spec.labels)}`);
    }
    const bigEnough = labelled.filter((w) => largeEnough(w.capacity, entry));
    const withLabels = want.length ? ` with ${labelList(entry.spec.labels)}` : '';
    if (!bigEnough.length) return lasting(`no worker large enough: ${shortfall(entry, labelled, withLabels)}`);
    const avoided = bigEnough.every(
      (w) => (this.unresponsive.get(w.id) ?? 0) > now || this.refusedBy(entry, w.id, now),
    );
    if (avoided) return { reason: 'no worker accepted the assignment yet; retrying', kind: 'retrying' };
    // which workers it waits for, when not every online one would do
    const which =
      bigEnough.length === online.length
        ? 'all workers busy'
        : bigEnough.length === labelled.length
          ? `all workers${withLabels} are busy`
          : `all workers${withLabels} that are large enough are busy`;
    return { reason: `${which} (${needs(entry)})`, kind: 'busy' };
  }

  /**
   * The reasons of the entries after those a full round read (a backlog over ROUND_LIMIT), by kind
   * (labels and size), in one statement: else they said nothing about why they wait until they
   * came within the first ROUND_LIMIT. Behind the ones read, those a worker fits wait for it.
   */
  private async explainTheRest(afterId: string, skip: string[], online: RegistryWorker[], draining: RegistryWorker[], now: number): Promise<void> {
    let changed: { execution_id: string; job_id: string | null; traceparent: string | null; reason: string }[];
    try {
      const kinds = await this.queue.waitingKindsAfter(afterId);
      if (!kinds.length) return;
      const reasons = kinds.map((k: EntryKind) => {
        const why = this.whyWaiting({ execution_id: '', cpu_cores: k.cpu_cores, memory_bytes: k.memory_bytes, spec: { labels: k.labels } }, online, draining, now);
        return { ...k, reason: why.reason, min_age_ms: why.kind === 'busy' ? BUSY_ANNOUNCE_MS : 0 };
      });
      changed = await this.queue.setReasonsAfter(afterId, skip, reasons);
    } catch (err) {
      this.logger.warn({ err }, 'could not record why the executions further back wait');
      return;
    }
    await this.publishReasons(changed.map(({ reason, ...entry }) => ({ entry, reason })));
  }

  /** Records the reasons in one statement and announces those that changed. */
  private async announceWaiting(waiting: { entry: QueueEntry; reason: string }[]): Promise<void> {
    let changed: Set<string>;
    try {
      changed = await this.queue.setReasons(waiting.map((w) => ({ execution_id: w.entry.execution_id, reason: w.reason })));
    } catch (err) {
      this.logger.warn({ err, executions: waiting.length }, 'could not record why executions wait');
      return;
    }
    await this.publishReasons(waiting.filter((w) => changed.has(w.entry.execution_id)));
  }

  private async publishReasons(
    waiting: { entry: Pick<QueueEntry, 'execution_id' | 'job_id' | 'traceparent'>; reason: string }[],
  ): Promise<void> {
    const timestamp = new Date().toISOString();
    await Promise.all(
      waiting.map(async ({ entry, reason }) => {
        const event: ExecutionStatusEvent = {
          execution_id: entry.execution_id,
          job_id: entry.job_id,
          worker_id: null,
          status: 'queued',
          message: reason,
          timestamp,
        };
        try {
          const subject = this.bus.subjects.forExecution(entry.job_id).status(entry.execution_id);
          await publishTraced(this.bus.js, subject, encodeJson(event), {}, contextFromTraceparent(entry.traceparent)); // in the execution's trace
        } catch (err) {
          this.logger.warn({ err, execution_id: entry.execution_id }, 'could not announce why an execution waits');
        }
      }),
    );
  }

  /** The placement as a span of the execution's trace (its parent stored with the queue entry). */
  /** `stored`: the claim, written alongside the request (by the fast path; a round claimed before). */
  private assign(entry: QueueEntry, workerId: string, stored: Promise<Stored> = CLAIMED): Promise<void> {
    return withSpan('scheduler place', () => this.assignTo(entry, workerId, stored), {
      parent: entry.traceparent,
      attributes: { 'hodei.execution_id': entry.execution_id, 'hodei.worker_id': workerId },
    });
  }

  private async assignTo(entry: QueueEntry, workerId: string, stored: Promise<Stored>): Promise<void> {
    const log = this.logger.child({ execution_id: entry.execution_id, worker_id: workerId });
    const assignment: Assignment = {
      execution_id: entry.execution_id,
      job_id: entry.job_id,
      attempt: entry.attempt,
      spec: entry.spec,
      ...(entry.traceparent ? { traceparent: entry.traceparent } : {}),
      ...traceField(), // the placement span, when traced
    };
    let answer = await this.ask(workerId, assignment);
    let claim: Stored;
    try {
      claim = await stored;
    } catch (err) {
      // The queued event is redelivered and placed again; a worker that runs or ran it takes the
      // second assignment as the same run (it remembers its last 10,000 executions).
      log.error({ err }, 'could not store the claimed entry');
      return;
    }
    if (!claim.stored) {
      // Its cancel, its end or an earlier copy of the event was there first. The worker runs it
      // once whatever it is sent; only a second run elsewhere (or after its end) is stopped.
      const sameRun = claim.known?.worker_id === workerId && (claim.known.state === 'assigning' || claim.known.state === 'assigned');
      if (answer.kind === 'accepted' && !sameRun) this.stopOn(entry.execution_id, workerId);
      return;
    }
    try {
      // A worker that did not answer in time may still take the assignment (a busy event loop, a
      // slow link): placed elsewhere, it would run twice. It keeps the claim and is asked again
      // until it answers (a worker runs an execution id once: one it took says yes again), has no
      // subscription left (gone: placed elsewhere), or the claim is over (its heartbeat confirmed
      // it, it went offline and the execution is lost, or this claim expired).
      for (let asked = 1; answer.kind === 'silent'; asked++) {
        this.placements.inc({ outcome: 'no_answer' });
        if (asked === 1) log.warn({ why: answer.why }, 'worker did not answer the assignment in time; asking it again (it may have taken it)');
        if (this.stopped || !(await this.queue.keepClaim(entry.execution_id, workerId))) return;
        answer = await this.ask(workerId, assignment);
      }
      if (answer.kind === 'accepted') {
        await this.confirms.add({ execution_id: entry.execution_id, worker_id: workerId });
        this.placements.inc({ outcome: 'accepted' });
        log.debug('execution placed');
      } else {
        await this.queue.release(entry.execution_id, workerId);
        this.placements.inc({ outcome: answer.kind === 'refused' ? 'refused' : 'no_answer' });
        log.warn({ why: answer.why }, 'worker did not take the assignment; placing it again');
        this.kick();
      }
    } catch (err) {
      log.error({ err }, 'could not record the assignment outcome');
    }
  }

  /** Sends the assignment: `silent` when the worker may have taken it without its answer arriving,
   *  `gone` when no worker listens on its subject (it cannot have it). */
  private async ask(workerId: string, assignment: Assignment): Promise<{ kind: 'accepted' | 'refused' | 'silent' | 'gone'; why: string }> {
    try {
      const headers = traceHeaders();
      const reply = await this.bus.nc.request(this.bus.subjects.assign(workerId), encodeJson(assignment), {
        timeout: ASSIGN_TIMEOUT_MS,
        ...(headers ? { headers } : {}),
      });
      const ack = AssignmentAck.safeParse(decodeJson(reply.data));
      if (ack.success && ack.data.accepted) return { kind: 'accepted', why: '' };
      // a full worker frees a slot soon (it was over-filled: say, by another replica)
      const full = ack.success && (ack.data.reason ?? '').startsWith('no free slot');
      this.refused.set(`${assignment.execution_id}:${workerId}`, Date.now() + (full ? REFUSED_FULL_MS : REFUSED_MS));
      return { kind: 'refused', why: ack.success ? `refused: ${ack.data.reason ?? 'no reason given'}` : 'malformed acknowledgement' };
    } catch (err) {
      this.unresponsive.set(workerId, Date.now() + UNRESPONSIVE_MS);
      const gone = err instanceof RequestError && err.isNoResponders();
      return { kind: gone ? 'gone' : 'silent', why: `no answer: ${(err as Error).message}` };
    }
  }

  /** Cancels an execution on the worker it was placed on (answers are not awaited). */
  stopOn(executionId: string, workerId: string): void {
    const cancel: WorkerControl = { action: 'cancel', execution_id: executionId, reason: 'cancelled' };
    this.bus.nc
      .request(this.bus.subjects.control(workerId), encodeJson(cancel), { timeout: ASSIGN_TIMEOUT_MS })
      .catch((err: unknown) => this.logger.warn({ err, execution_id: executionId, worker_id: workerId }, 'could not stop a cancelled execution on its worker'));
  }

  private forgetExpired(now: number): void {
    for (const [k, until] of this.refused) if (until <= now) this.refused.delete(k);
    for (const [k, until] of this.unresponsive) if (until <= now) this.unresponsive.delete(k);
  }
}
