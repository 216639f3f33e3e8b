// Placement: waiting executions (priority DESC, created_at ASC) onto online workers whose labels
// and free capacity fit. One round at a time in this process; the claim (waiting → assigning) is a
// conditional UPDATE, so two replicas never hand out the same execution.
import { decodeJson, encodeJson, traceField, traceHeaders, withSpan, type Bus, type Logger } from '@hodei/platform';
import { AssignmentAck, type Assignment, type ExecutionQueuedEvent, type ExecutionStatusEvent, type RegistryWorker } from '@hodei/types';
import type { Counter } from 'prom-client';
import { entryOf, queueOrder, type QueueEntry, type QueueStore } from './store/queue.js';
import type { WorkerStore } from './store/workers.js';

const ROUND_LIMIT = 1000;
/**
 * A round after a finish or an arrival reads only the head of the queue: with a backlog, reading
 * (and re-checking) every waiting entry each time a slot frees made a round cost 10–40 ms. When
 * the head does not fill every free slot, the round reads on up to ROUND_LIMIT; the safety tick
 * and worker changes ask for a full round, which also refreshes every waiting reason.
 */
const HEAD_LIMIT = 64;
const ASSIGN_TIMEOUT_MS = 2000;
/** How long a worker that did not answer (or refused an entry) is passed over. */
const UNRESPONSIVE_MS = 3000;
const REFUSED_MS = 2000;
const EPSILON = 1e-9;

interface Slot {
  worker: RegistryWorker;
  slots: number;
  cpu: number;
  memory: number;
}

const labelsMatch = (want: Record<string, string>, have: Record<string, string>) =>
  Object.entries(want).every(([k, v]) => have[k] === v);

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i += 1;
  }
  return `${n} ${units[i]}`;
}

const needs = (e: QueueEntry) => `needs 1 slot, ${e.cpu_cores} cpu_cores, ${formatBytes(e.memory_bytes)} memory`;

export class Placer {
  private running = false;
  private again = false;
  private fullWanted = true;
  private stopped = false;
  private ready = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly unresponsive = new Map<string, number>();
  private readonly refused = new Map<string, number>();
  /** Queued events whose insert is still in flight: the next round reads them from here, not back from the table. */
  private arrivals: { entry: QueueEntry; inserted: Promise<boolean> }[] = [];

  constructor(
    private readonly bus: Bus,
    private readonly queue: QueueStore,
    private readonly workers: WorkerStore,
    private readonly placements: Counter<'outcome'>,
    private readonly logger: Logger,
  ) {}

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
  async admit(ev: ExecutionQueuedEvent): Promise<boolean> {
    const inserted = this.queue.enqueue(ev);
    if (this.ready && !this.stopped) {
      this.arrivals.push({ entry: entryOf(ev), inserted });
      this.kick(false);
    }
    return inserted;
  }

  /**
   * Asks for a round; rounds never overlap, and a kick during one runs another right after.
   * `full`: read every waiting entry (worker set changed, safety tick), not only the queue's head.
   */
  kick(full = true): void {
    if (full) this.fullWanted = true;
    if (!this.ready || this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.round();
        } catch (err) {
          this.logger.error({ err }, 'placement round failed');
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
    const arrivals = this.arrivals.splice(0);
    let limit = this.fullWanted ? ROUND_LIMIT : HEAD_LIMIT;
    this.fullWanted = false;
    const [head, online, fresh] = await Promise.all([
      this.queue.waiting(limit),
      this.workers.placeable(),
      Promise.all(arrivals.map((a) => a.inserted.catch(() => false))),
    ]);
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
    let plan = this.plan(withArrivals(head, truncated), online, now);
    // Only the head was read and a slot is still free: what waits behind the head may fit it.
    if (truncated && plan.slots.some((s) => s.slots >= 1)) {
      plan = this.plan(withArrivals(await this.queue.waiting(ROUND_LIMIT), false), online, now);
    }
    const { chosen, waiting } = plan;

    if (chosen.length) {
      const claimed = await this.queue.claim(chosen.map((c) => ({ execution_id: c.entry.execution_id, worker_id: c.worker.id })));
      for (const c of chosen) {
        if (!claimed.has(c.entry.execution_id)) continue;
        const p = this.assign(c.entry, c.worker.id).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    }
    const changed = waiting.filter((w) => w.entry.waiting_reason !== w.reason);
    if (changed.length) await Promise.all(changed.map((w) => this.announceWaiting(w.entry, w.reason)));
    this.forgetExpired(now);
  }

  /** Best-fit of the entries (in queue order) onto the free capacity of the online workers. */
  private plan(entries: QueueEntry[], online: RegistryWorker[], now: number) {
    const slots: Slot[] = online
      .filter((w) => (this.unresponsive.get(w.id) ?? 0) <= now)
      .map((w) => ({ worker: w, slots: w.free.slots, cpu: w.free.cpu_cores, memory: w.free.memory_bytes }));
    const chosen: { entry: QueueEntry; worker: RegistryWorker }[] = [];
    const waiting: { entry: QueueEntry; reason: string }[] = [];
    for (const entry of entries) {
      let best: Slot | undefined;
      for (const s of slots) {
        if (s.slots < 1 || s.cpu + EPSILON < entry.cpu_cores || s.memory < entry.memory_bytes) continue;
        if (!labelsMatch(entry.spec.labels, s.worker.labels)) continue;
        if ((this.refused.get(`${entry.execution_id}:${s.worker.id}`) ?? 0) > now) continue;
        // a retry goes back to a worker an earlier attempt ran on only when no other one fits
        const avoided = (w: Slot) => entry.avoid_workers.includes(w.worker.id);
        if (best && avoided(best) !== avoided(s)) {
          if (avoided(s)) continue;
          best = s;
          continue;
        }
        if (!best || s.slots > best.slots || (s.slots === best.slots && s.cpu > best.cpu)) best = s;
      }
      if (best) {
        best.slots -= 1;
        best.cpu -= entry.cpu_cores;
        best.memory -= entry.memory_bytes;
        chosen.push({ entry, worker: best.worker });
      } else {
        waiting.push({ entry, reason: this.whyWaiting(entry, online, now) });
      }
    }
    return { chosen, waiting, slots };
  }

  private whyWaiting(entry: QueueEntry, online: RegistryWorker[], now: number): string {
    if (!online.length) return 'no online worker';
    const want = Object.entries(entry.spec.labels);
    const labelled = online.filter((w) => labelsMatch(entry.spec.labels, w.labels));
    if (!labelled.length) {
      const missing = want.find(([k, v]) => !online.some((w) => w.labels[k] === v));
      return missing
        ? `no worker with label ${missing[0]}=${missing[1]}`
        : `no worker with labels ${want.map(([k, v]) => `${k}=${v}`).join(', ')}`;
    }
    const bigEnough = labelled.filter(
      (w) => w.capacity.cpu_cores + EPSILON >= entry.cpu_cores && w.capacity.memory_bytes >= entry.memory_bytes,
    );
    if (!bigEnough.length) return `no worker large enough (${needs(entry)})`;
    const avoided = bigEnough.every(
      (w) => (this.unresponsive.get(w.id) ?? 0) > now || (this.refused.get(`${entry.execution_id}:${w.id}`) ?? 0) > now,
    );
    if (avoided) return 'no worker accepted the assignment yet; retrying';
    return `all workers busy (${needs(entry)})`;
  }

  private async announceWaiting(entry: QueueEntry, reason: string): Promise<void> {
    try {
      if (!(await this.queue.setReason(entry.execution_id, reason))) return;
      const event: ExecutionStatusEvent = {
        execution_id: entry.execution_id,
        job_id: entry.job_id,
        worker_id: null,
        status: 'queued',
        message: reason,
        timestamp: new Date().toISOString(),
      };
      await this.bus.js.publish(this.bus.subjects.executionStatus(entry.execution_id), encodeJson(event));
    } catch (err) {
      this.logger.warn({ err, execution_id: entry.execution_id }, 'could not announce why an execution waits');
    }
  }

  /** The placement as a span of the execution's trace (its parent stored with the queue entry). */
  private assign(entry: QueueEntry, workerId: string): Promise<void> {
    return withSpan('scheduler place', () => this.assignTo(entry, workerId), {
      parent: entry.traceparent,
      attributes: { 'hodei.execution_id': entry.execution_id, 'hodei.worker_id': workerId },
    });
  }

  private async assignTo(entry: QueueEntry, workerId: string): Promise<void> {
    const log = this.logger.child({ execution_id: entry.execution_id, worker_id: workerId });
    const assignment: Assignment = {
      execution_id: entry.execution_id,
      job_id: entry.job_id,
      attempt: entry.attempt,
      spec: entry.spec,
      ...(entry.traceparent ? { traceparent: entry.traceparent } : {}),
      ...traceField(), // the placement span, when traced
    };
    let accepted = false;
    let why = '';
    try {
      const headers = traceHeaders();
      const reply = await this.bus.nc.request(this.bus.subjects.assign(workerId), encodeJson(assignment), {
        timeout: ASSIGN_TIMEOUT_MS,
        ...(headers ? { headers } : {}),
      });
      const ack = AssignmentAck.safeParse(decodeJson(reply.data));
      if (ack.success && ack.data.accepted) accepted = true;
      else {
        why = ack.success ? `refused: ${ack.data.reason ?? 'no reason given'}` : 'malformed acknowledgement';
        this.refused.set(`${entry.execution_id}:${workerId}`, Date.now() + REFUSED_MS);
      }
    } catch (err) {
      why = `no answer: ${(err as Error).message}`;
      this.unresponsive.set(workerId, Date.now() + UNRESPONSIVE_MS);
    }
    try {
      if (accepted) {
        await this.queue.confirm(entry.execution_id, workerId);
        this.placements.inc({ outcome: 'accepted' });
        log.debug('execution placed');
      } else {
        await this.queue.release(entry.execution_id, workerId);
        this.placements.inc({ outcome: why.startsWith('refused') ? 'refused' : 'no_answer' });
        log.warn({ why }, 'worker did not take the assignment; placing it again');
        this.kick();
      }
    } catch (err) {
      log.error({ err }, 'could not record the assignment outcome');
    }
  }

  private forgetExpired(now: number): void {
    for (const [k, until] of this.refused) if (until <= now) this.refused.delete(k);
    for (const [k, until] of this.unresponsive) if (until <= now) this.unresponsive.delete(k);
  }
}
