// What the scheduler hears over NATS: queued / cancelled executions and their status events (durable
// JetStream consumers; a final status frees the execution's slot), worker heartbeats (core NATS)
// and worker exits (JetStream).
import { ACK_WAIT_MS, currentTraceparent, decodeJson, encodeJson, ensureConsumer, FailureLog, InProgress, withConsumedSpan, type Bus, type Logger } from '@hodei/platform';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Subscription } from '@nats-io/transport-node';
import { ExecutionCancelEvent, ExecutionQueuedEvent, ExecutionStatusEvent, isFinalStatus, WorkerHeartbeat, z, type HeartbeatReply } from '@hodei/types';

export interface EventHandlers {
  /** `firstDelivery`: this event was never handed out before (no earlier attempt may have placed it). */
  queued: (ev: ExecutionQueuedEvent, firstDelivery: boolean) => Promise<void>;
  /** Its final status, as its worker (or this scheduler: `lost`) published it. */
  finished: (executionId: string) => Promise<void>;
  cancelled: (executionId: string) => Promise<void>;
  /** `stopping`: worker-manager had asked it to stop (it ends `stopped`, not `offline`). */
  workerExited: (workerId: string, stopping: boolean) => Promise<void>;
  /** The answer, sent when the heartbeat came as a request. */
  heartbeat: (hb: WorkerHeartbeat) => Promise<HeartbeatReply>;
  /** All durable consumers have delivered everything that was pending at start-up. */
  caughtUp: () => void;
}

interface ConsumerSpec {
  durable: string;
  subject: string;
  handle: (m: JsMsg) => Promise<void>;
  /** Messages handled side by side (each acked when its own handling is done); order does not
   *  matter for these, and their database writes then share statements. */
  parallel?: number;
}

const CATCH_UP_MAX_MS = 5000;
const PARALLEL = 64;

export async function startEventConsumers(bus: Bus, logger: Logger, h: EventHandlers, ackWaitMs = ACK_WAIT_MS): Promise<() => Promise<void>> {
  const s = bus.subjects;
  const parse = <T extends z.ZodType>(schema: T, m: JsMsg): z.output<T> | null => {
    try {
      const r = schema.safeParse(decodeJson(m.data));
      if (r.success) return r.data;
      logger.warn({ subject: m.subject, issues: r.error.issues }, 'dropping malformed event');
    } catch (err) {
      logger.warn({ err, subject: m.subject }, 'dropping event that is not JSON');
    }
    return null;
  };
  // only the id and the status matter here (the rest of a status event is worker-manager's business)
  const StatusEvent = ExecutionStatusEvent.pick({ execution_id: true, status: true });

  const onQueued = async (m: JsMsg) => {
    const ev = parse(ExecutionQueuedEvent, m);
    if (ev) await h.queued({ ...ev, traceparent: currentTraceparent() ?? ev.traceparent }, !m.redelivered);
  };
  const onStatus = async (m: JsMsg) => {
    const ev = parse(StatusEvent, m);
    if (ev && isFinalStatus(ev.status)) await h.finished(ev.execution_id);
  };
  // executions of jobs, and those without one (their own subjects: see Subjects)
  const specs: ConsumerSpec[] = [
    { durable: 'scheduler-queue', subject: s.executionQueued, parallel: PARALLEL, handle: onQueued },
    { durable: 'scheduler-queue-adhoc', subject: s.executionQueuedAdhoc, parallel: PARALLEL, handle: onQueued },
    { durable: 'scheduler-status', subject: s.executionStatusAll, parallel: PARALLEL, handle: onStatus },
    { durable: 'scheduler-status-adhoc', subject: s.executionStatusAdhocAll, parallel: PARALLEL, handle: onStatus },
    {
      durable: 'scheduler-cancel',
      subject: s.executionCancel,
      handle: async (m) => {
        const ev = parse(ExecutionCancelEvent, m);
        if (ev) await h.cancelled(ev.execution_id);
      },
    },
    {
      durable: 'scheduler-worker-exited',
      subject: s.workerEvent('*', 'exited'),
      handle: async (m) => {
        const workerId = m.subject.split('.').at(-2) ?? '';
        let stopping = false;
        try {
          stopping = (decodeJson(m.data) as { stopping?: unknown } | null)?.stopping === true;
        } catch {
          // no body: an unexpected exit
        }
        if (z.uuid().safeParse(workerId).success) await h.workerExited(workerId, stopping);
      },
    },
  ];

  let pendingConsumers = specs.length;
  let announced = false;
  const announce = () => {
    if (announced) return;
    announced = true;
    clearTimeout(fallback);
    h.caughtUp();
  };
  const markCaughtUp = () => {
    pendingConsumers -= 1;
    if (pendingConsumers === 0) announce();
  };
  // Unacked messages of a crashed predecessor come back only after ack_wait: do not wait that long.
  const fallback = setTimeout(announce, CATCH_UP_MAX_MS);
  fallback.unref();

  const handling = new InProgress(ackWaitMs);
  const handlingFailures = new FailureLog(logger, 'event handling', 'redelivered after a second');
  const heartbeatFailures = new FailureLog(logger, 'recording heartbeats');
  const running: { messages: ConsumerMessages; done: Promise<void> }[] = [];
  for (const spec of specs) {
    const consumer = await ensureConsumer(bus, s.eventsStream, { durable: spec.durable, filter: spec.subject, maxAckPending: 10_000, ackWaitMs });
    const info = await consumer.info();
    let caught = info.num_pending === 0;
    if (caught) markCaughtUp();
    const messages = await consumer.consume({ max_messages: 1000 });
    const inFlight = new Set<Promise<void>>();
    const handleOne = async (m: JsMsg) => {
      handling.add(m);
      try {
        await withConsumedSpan(`scheduler ${spec.durable}`, m, () => spec.handle(m));
        m.ack();
        handlingFailures.worked();
      } catch (err) {
        handlingFailures.failed(err, { subject: m.subject });
        m.nak(1000);
      } finally {
        handling.delete(m);
      }
      if (!caught && m.info.pending === 0) {
        caught = true;
        // caught up once the messages before this one are handled too
        void Promise.allSettled([...inFlight]).then(markCaughtUp);
      }
    };
    const done = (async () => {
      for await (const m of messages) {
        const p = handleOne(m).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= (spec.parallel ?? 1)) await Promise.race(inFlight);
      }
      await Promise.allSettled(inFlight);
    })();
    running.push({ messages, done });
  }

  // Before 2026-11-30 a slot was freed by worker-manager's `finished` event: those consumers go
  // (the status consumers above start from the beginning of the stream, so nothing falls between).
  for (const old of ['scheduler-finished', 'scheduler-finished-adhoc']) await bus.jsm.consumers.delete(s.eventsStream, old).catch(() => false);

  const heartbeats: Subscription = bus.nc.subscribe(s.heartbeatAll, {
    queue: 'scheduler',
    callback: (err, msg) => {
      if (err) return;
      let hb: WorkerHeartbeat;
      try {
        const r = WorkerHeartbeat.safeParse(decodeJson(msg.data));
        if (!r.success) return void logger.warn({ subject: msg.subject }, 'dropping malformed heartbeat');
        hb = r.data;
      } catch {
        return void logger.warn({ subject: msg.subject }, 'dropping heartbeat that is not JSON');
      }
      h.heartbeat(hb).then(
        (reply) => {
          heartbeatFailures.worked();
          if (msg.reply) msg.respond(encodeJson(reply));
        },
        (e: unknown) => heartbeatFailures.failed(e, { worker_id: hb.worker_id }),
      );
    },
  });

  return async () => {
    clearTimeout(fallback);
    handling.stop();
    heartbeats.unsubscribe();
    for (const r of running) await r.messages.close();
    await Promise.allSettled(running.map((r) => r.done));
  };
}
