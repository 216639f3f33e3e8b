// The scheduler: cron schedules, the worker registry (REST + NATS heartbeats) and the placement of
// queued executions on workers.
import { fileURLToPath } from 'node:url';
import { Batcher, bootService, busAnswers, Counter, RecentSet, decodeJson, encodeJson, FailureLog, Gauge, Histogram, ServiceClient, silenceCheckMs, startAtZero, type Config, type Logger, type RunningService, type ServiceDefinition } from '@hodei/platform';
import type { ExecutionStatusEvent, WorkerControl } from '@hodei/types';
import { startEventConsumers } from './events.js';
import { Firer } from './firer.js';
import { Placer } from './placer.js';
import { registerScheduleRoutes } from './routes/schedules.js';
import { registerWorkerRoutes } from './routes/workers.js';
import { QueueStore, type PlacedEntry } from './store/queue.js';
import { ScheduleStore } from './store/schedules.js';
import { WorkerStore } from './store/workers.js';

const SAFETY_TICK_MS = 1000;
const FINISHED_REMEMBERED = 10_000;
/** An `assigning` claim older than this belongs to a process that died mid-request. */
const STALE_CLAIM_MS = 10_000;
/** The events stream keeps 7 days; tombstones must outlive the messages they guard against. */
const TOMBSTONE_DAYS = 8;
/** A schedule's firings (GET /schedules/:id/runs) are kept this long, its newest for ever. */
const SCHEDULE_RUNS_KEEP_DAYS = 8;

export const definition: ServiceDefinition = {
  title: 'Hodei Jobs scheduler',
  description: 'Cron schedules, worker registry and heartbeats, and placement of queued executions on workers.',
  schema: 'scheduler',
  migrationsDir: fileURLToPath(new URL('../migrations', import.meta.url)),
  setup: (ctx) => {
    const { config, logger, db, bus, api, metrics } = ctx;
    const schedules = new ScheduleStore(db);
    const workers = new WorkerStore(db);
    const queue = new QueueStore(db);
    const orchestrator = new ServiceClient(config.urls.orchestrator, config.apiToken);

    const placements = new Counter({
      name: 'hodei_placements_total',
      help: 'Assignments sent to workers, by outcome (accepted, refused, no_answer)',
      labelNames: ['outcome'] as const,
      registers: [metrics],
    });
    startAtZero(placements, 'outcome', ['accepted', 'refused', 'no_answer']);
    new Gauge({
      name: 'hodei_queue_depth',
      help: 'Executions waiting for a worker',
      registers: [metrics],
      async collect() {
        this.set(await queue.depth());
      },
    });
    new Gauge({
      name: 'hodei_workers',
      help: 'Registered workers by status',
      labelNames: ['status'] as const,
      registers: [metrics],
      async collect() {
        const counts = await workers.countByStatus();
        for (const status of ['online', 'draining', 'offline', 'stopped']) this.set({ status }, counts[status] ?? 0);
      },
    });
    new Gauge({
      name: 'hodei_worker_slots',
      help: 'Slots of each online or draining worker: used (by executions placed on it) and free',
      labelNames: ['worker', 'state'] as const,
      registers: [metrics],
      async collect() {
        this.reset();
        for (const { id, slots, used } of await workers.slotUsage()) {
          this.set({ worker: id, state: 'used' }, used);
          this.set({ worker: id, state: 'free' }, slots - used);
        }
      },
    });
    new Gauge({
      name: 'hodei_worker_heartbeat_age_seconds',
      help: 'Seconds since the last heartbeat of each worker that is not stopped',
      labelNames: ['worker'] as const,
      registers: [metrics],
      async collect() {
        this.reset();
        for (const { id, age } of await workers.heartbeatAges()) this.set({ worker: id }, age);
      },
    });

    const firings = new Counter({
      name: 'hodei_schedule_firings_total',
      help: 'Schedule firings by outcome (fired, skipped, failed, missed)',
      labelNames: ['outcome'] as const,
      registers: [metrics],
    });
    startAtZero(firings, 'outcome', ['fired', 'skipped', 'failed', 'missed']);
    const firer = new Firer(
      schedules,
      new ServiceClient(config.urls['worker-manager'], config.apiToken),
      orchestrator,
      bus,
      {
        lateness: new Histogram({
          name: 'hodei_schedule_lateness_seconds',
          help: 'Time from a firing\'s scheduled second to the moment the scheduler fired it',
          buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 60],
          registers: [metrics],
        }),
        firings,
      },
      logger.child({ component: 'cron' }),
    );
    const placer = new Placer(bus, queue, workers, placements, logger.child({ component: 'placer' }));
    registerScheduleRoutes(api, schedules, orchestrator, () => firer.kick(), (s) => firer.runNow(s));
    const deregistered = (id: string) => {
      placer.kick(); // no more placing on it from what the last round saw
      // a deregistered agent would otherwise idle on, heartbeating, never given work again
      try {
        bus.nc.publish(bus.subjects.control(id), encodeJson({ action: 'drain' } satisfies WorkerControl));
      } catch (err) {
        logger.warn({ err, worker_id: id }, 'a deregistered worker could not be told to drain');
      }
    };
    // Silence is measured from this start, from the last heartbeat that could not be recorded, or from
    // this scheduler's reconnection to NATS, at the earliest: heartbeats sent while no scheduler was
    // listening, while the database was down or while NATS could not bring them here were not
    // recorded, and a worker gets one whole time-out to be heard again.
    let startedAt = Infinity;
    /** A heartbeat, over NATS or HTTP: null for a worker not registered; else the executions it
     *  lists that were recorded over or placed on another worker, which it must kill. */
    const heartbeat = async (workerId: string, status: 'online' | 'draining', running: string[]) => {
      const r = await workers.heartbeat(workerId, status).catch((err: unknown) => {
        // not recorded (the database is down): the silence that follows is not the worker's
        startedAt = performance.now();
        throw err;
      });
      if (!r) return null;
      if (r.status !== r.previous) placer.kick();
      const writtenOff = running.length ? await queue.runningOn(workerId, running) : [];
      // debug: a beat sent just before a process exited names an execution whose final status
      // may be recorded first; the worker logs what it actually kills
      if (writtenOff.length) logger.debug({ worker_id: workerId, executions: writtenOff }, 'a worker listed executions recorded over or placed on another worker: told to kill them');
      return { id: r.id, status: r.status, last_heartbeat_at: r.last_heartbeat_at, written_off: writtenOff };
    };
    registerWorkerRoutes(api, workers, heartbeat, () => placer.kick(), deregistered);

    let stopConsumers: (() => Promise<void>) | undefined;
    const timers: NodeJS.Timeout[] = [];
    let lastPrune = 0;

    const safetyTick = async () => {
      const released = await queue.expireClaims(STALE_CLAIM_MS);
      if (released) logger.warn({ released }, 'released stale claims');
      const forgotten = await workers.forget(config.forgetWorkersAfterMs);
      if (forgotten.length) logger.info({ workers: forgotten, after_ms: config.forgetWorkersAfterMs }, 'forgot workers long stopped or exited');
      if (Date.now() - lastPrune > 3600_000) {
        lastPrune = Date.now();
        await queue.prune(TOMBSTONE_DAYS);
        // an every-second schedule fires 86,400 times a day
        const pruned = await schedules.pruneRuns(SCHEDULE_RUNS_KEEP_DAYS);
        if (pruned) logger.info({ firings: pruned, days: SCHEDULE_RUNS_KEEP_DAYS }, 'deleted old schedule firings');
      }
      placer.kick();
    };
    // A final status delivered again (or the `lost` this service published itself, after freeing
    // the slot) finds its execution in `finishedHere` and costs nothing. Finishes of one moment
    // share a statement.
    const finishedHere = new RecentSet<string>(FINISHED_REMEMBERED);
    const finishing = new Batcher<string>((ids) => queue.finish(ids));
    const finish = async (id: string) => {
      if (finishedHere.has(id)) return;
      await finishing.add(id);
      finishedHere.add(id);
      placer.kick(false);
    };
    /**
     * Executions placed on a worker that is gone ran to nowhere: they are `lost` (worker-manager records
     * it and retries). The event goes out before the queue row changes, so a publish that fails (NATS
     * down) or a crash in between leaves them placed on an offline worker, where `republishLost` finds
     * them again; the msgID makes a second publish of the same `lost` harmless.
     */
    const publishLost = async <E extends PlacedEntry>(lost: E[], why: (e: E) => string) => {
      for (const e of lost) {
        const now = new Date().toISOString();
        const event: ExecutionStatusEvent = {
          execution_id: e.execution_id,
          job_id: e.job_id,
          worker_id: e.worker_id,
          status: 'lost',
          message: why(e),
          finished_at: now,
          timestamp: now,
        };
        await bus.js.publish(bus.subjects.forExecution(e.job_id).status(e.execution_id), encodeJson(event), { msgID: `${e.execution_id}-lost` });
      }
      if (lost.length) await queue.lost(lost);
    };
    const workerGone = async (workerId: string, why: string) => {
      placer.kick(); // no more placing on it from what the last round saw
      const lost = await queue.placedOn(workerId);
      await publishLost(lost, () => why);
      if (lost.length) logger.warn({ worker_id: workerId, executions: lost.map((e) => e.execution_id) }, 'executions lost with their worker');
    };
    const republishLost = async () => {
      const lost = await queue.placedOnGone(listening() ? config.heartbeatTimeoutMs : null);
      await publishLost(lost, (e) =>
        e.worker_status === 'stopped'
          ? `worker ${e.worker_id} was deregistered and sent no heartbeat for ${config.heartbeatTimeoutMs} ms`
          : `worker ${e.worker_id} went offline`,
      );
      if (lost.length) logger.warn({ executions: lost.map((e) => e.execution_id) }, 'lost executions of workers gone (offline, or deregistered and silent) published');
    };
    /** Listened for one whole time-out: silence now says a worker is gone. */
    const listening = () => bus.link.up && performance.now() - Math.max(startedAt, bus.link.since) >= config.heartbeatTimeoutMs;
    let lastCheckAt = -Infinity;
    const expireWorkers = async () => {
      // A check comes at most 200 ms after the last one ended: a longer gap means this process was
      // not running (a stall, a pause, a suspended VM) and heard no heartbeat meanwhile. That silence
      // is its own, so every worker gets one whole time-out to be heard again, as after a start.
      const gap = performance.now() - lastCheckAt;
      if (gap > config.heartbeatTimeoutMs / 2 && listening()) {
        logger.warn({ stalled_ms: Math.round(gap), timeout_ms: config.heartbeatTimeoutMs }, 'the scheduler was not running: workers get one whole time-out to be heard again');
        startedAt = performance.now();
      }
      try {
        if (!listening()) return;
        // Over a connection gone silent (a network cut) no heartbeat comes either: the silence is
        // this scheduler's, and once it answers again the heartbeats held up come first.
        if (!(await busAnswers(bus, config.heartbeatTimeoutMs / 4))) {
          logger.warn({ timeout_ms: config.heartbeatTimeoutMs }, 'NATS does not answer this scheduler: workers get one whole time-out to be heard again once it does');
          startedAt = performance.now();
          return;
        }
        const gone = await workers.expire(config.heartbeatTimeoutMs);
        for (const id of gone) {
          logger.warn({ worker_id: id, timeout_ms: config.heartbeatTimeoutMs }, 'worker missed its heartbeats: offline');
          await workerGone(id, `worker ${id} sent no heartbeat for ${config.heartbeatTimeoutMs} ms`);
        }
      } finally {
        lastCheckAt = performance.now();
      }
    };
    /** Runs `fn` every `ms`, never twice at once (a publish waiting on NATS can outlast the period). */
    const every = (ms: number, fn: () => Promise<void>, what: string) => {
      let busy = false;
      const failures = new FailureLog(logger, what);
      const t = setInterval(() => {
        if (busy) return;
        busy = true;
        void fn()
          .then(() => failures.worked(), (err: unknown) => failures.failed(err))
          .finally(() => (busy = false));
      }, ms);
      t.unref();
      timers.push(t);
    };

    return {
      start: async () => {
        stopConsumers = await startEventConsumers(bus, logger, {
          queued: async (ev, firstDelivery) => {
            await placer.admit(ev, firstDelivery);
          },
          finished: finish,
          cancelled: async (id) => {
            const { dropped, placedOn } = await queue.cancel(id);
            if (dropped) logger.debug({ execution_id: id }, 'cancelled while waiting: dropped from the queue');
            // placed before worker-manager heard it started: stop it where it runs
            if (placedOn) placer.stopOn(id, placedOn);
          },
          workerExited: async (id, stopping) => {
            if (stopping) {
              if (await workers.setStatus(id, 'stopped', ['online', 'draining', 'offline'])) logger.info({ worker_id: id }, 'worker process stopped');
            } else if (await workers.setStatus(id, 'offline', ['online', 'draining'])) logger.warn({ worker_id: id }, 'worker process exited: offline');
            await workerGone(id, `worker ${id} exited`);
          },
          heartbeat: async (hb) => {
            const r = await heartbeat(hb.worker_id, hb.status, hb.running_executions);
            if (!r) {
              logger.debug({ worker_id: hb.worker_id }, 'heartbeat from an unregistered worker: told to register');
              return { status: 'unknown', written_off: [] };
            }
            return { status: r.status, written_off: r.written_off };
          },
          caughtUp: () => placer.setReady(),
        }, config.ackWaitMs);
        firer.kick();
        startedAt = performance.now();
        every(SAFETY_TICK_MS, safetyTick, 'placement safety tick');
        every(SAFETY_TICK_MS, republishLost, 'publishing the lost executions of workers gone');
        // checked often (a cheap indexed UPDATE) so that offline follows the time-out closely, not up to timeout/2 later
        every(silenceCheckMs(config.heartbeatTimeoutMs), expireWorkers, 'heartbeat time-out check');
      },
      stop: async () => {
        for (const t of timers) clearInterval(t);
        await firer.stop();
        await placer.stop();
        await stopConsumers?.();
      },
    };
  },
};

export function startScheduler(config: Config, logger?: Logger): Promise<RunningService> {
  return bootService(definition, config, logger);
}
