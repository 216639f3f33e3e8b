import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { subjects, type Subjects } from '@hodei/types';
import { ServiceUnavailableError } from './errors.js';
import type { Logger } from './logger.js';

export type { NatsConnection, JetStreamClient, JetStreamManager };

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  subjects: Subjects;
  link: BusLink;
}

/** This process's connection to the NATS server, as the client's status events tell it. */
export interface BusLink {
  /** False from a disconnect until the reconnect. */
  up: boolean;
  /** When (`performance.now()`) it last went down or came back. */
  since: number;
}

const DAY_NS = 24 * 3600 * 1e9;

/**
 * The ack wait of the services' durable consumers. What a process that died (`kill -9`) had taken
 * and not handled comes back to the next one, or to a replica, after this long, and work waits for
 * it meanwhile (a queued execution, a slot, a final status, a job's status), so it is short. What
 * is still being handled after a third of it is kept from coming back by `InProgress`.
 */
export const ACK_WAIT_MS = 5000;

/**
 * Delivered messages not acked yet: each one handled longer than a third of the ack wait gets a
 * progress signal (`working`) every third of it, so that JetStream does not deliver it again while
 * it is still being handled (a stalled database; a final status waiting for its log lines).
 */
export class InProgress {
  private readonly since = new Map<JsMsg, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly ackWaitMs = ACK_WAIT_MS) {
    this.timer = setInterval(() => this.signal(), ackWaitMs / 3);
    this.timer.unref();
  }

  add(m: JsMsg): void {
    this.since.set(m, Date.now());
  }

  delete(m: JsMsg): void {
    this.since.delete(m);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private signal(): void {
    const now = Date.now();
    for (const [m, since] of this.since) {
      if (now - since < this.ackWaitMs / 3) continue;
      this.since.set(m, now);
      try {
        m.working();
      } catch {
        // closing: what is not acked comes again to the next run
      }
    }
  }
}

export interface DurableSpec {
  durable: string;
  filter: string;
  maxAckPending?: number;
  /** ACK_WAIT_MS unless given (tests). */
  ackWaitMs?: number;
}

/**
 * A service's durable consumer on `stream`, created with the explicit acks and the ack wait the
 * services rely on. One made by an earlier version, with another filter or ack wait, is brought up
 * to date; one a replica creates at the same moment is used as it is.
 */
export async function ensureConsumer(bus: Bus, stream: string, spec: DurableSpec): Promise<Consumer> {
  const ackWait = (spec.ackWaitMs ?? ACK_WAIT_MS) * 1e6;
  const bringUpToDate = () => bus.jsm.consumers.update(stream, spec.durable, { filter_subject: spec.filter, ack_wait: ackWait });
  try {
    const { config } = await bus.jsm.consumers.info(stream, spec.durable);
    if (config.ack_wait !== ackWait || config.filter_subject !== spec.filter) await bringUpToDate();
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await bus.jsm.consumers
      .add(stream, {
        durable_name: spec.durable,
        filter_subject: spec.filter,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: ackWait,
        ...(spec.maxAckPending ? { max_ack_pending: spec.maxAckPending } : {}),
      })
      .catch(async (addErr: unknown) => {
        if (!String(addErr).includes('already')) throw addErr;
        await bringUpToDate();
      });
  }
  return bus.js.consumers.get(stream, spec.durable);
}

export interface NatsServers {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
}

/** One address of NATS_URL: its scheme (if any), then the credentials before `@` (if any). */
export const NATS_CREDENTIALS = /^(\s*(?:[a-z]+:\/\/)?)([^/?#]*)@/i;

/**
 * The servers of a NATS_URL (comma-separated) and the credentials in it. nats.js sends none it finds
 * in a URL (`nats://user:pass@host` was refused as an authorization violation with the right ones):
 * they go as options, the URLs without them. A user without a password is a token.
 */
export function natsServers(url: string): NatsServers {
  const out: NatsServers = { servers: [] };
  for (const entry of url.split(',').map((e) => e.trim()).filter(Boolean)) {
    const m = NATS_CREDENTIALS.exec(entry);
    if (!m) {
      out.servers.push(entry);
      continue;
    }
    const [whole, scheme, auth] = m as unknown as [string, string, string];
    out.servers.push(scheme + entry.slice(whole.length));
    if (out.user !== undefined || out.token !== undefined) continue;
    const colon = auth.indexOf(':');
    if (colon === -1) out.token = decodeURIComponent(auth);
    else [out.user, out.pass] = [decodeURIComponent(auth.slice(0, colon)), decodeURIComponent(auth.slice(colon + 1))];
  }
  return out;
}

/**
 * A 503 at once when this process's connection to NATS is known to be down, for a request that must
 * publish: a publish would wait for its time-out (5 s) to fail, and NATS drops what the client held
 * for it when it reconnects.
 */
export function requireBus(bus: Bus): void {
  if (!bus.link.up) {
    const downS = Math.round((performance.now() - bus.link.since) / 1000);
    throw new ServiceUnavailableError(`the message bus (NATS) is unavailable: this service lost its connection to it ${downS} s ago and is reconnecting; nothing was done, try again`);
  }
}

/** Whether the server answers this connection (a PING's PONG) within `ms`: a network gone silent
 *  shows no disconnect until the client's own pings time out, minutes later. */
export async function busAnswers(bus: Bus, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([bus.nc.flush().then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The logs stream's byte limit unless given (HODEI_LOG_STREAM_MAX_BYTES's default). */
export const LOG_STREAM_MAX_BYTES = 1024 * 1024 * 1024;

export interface BusOptions {
  /** HODEI_LOG_STREAM_MAX_BYTES: the logs stream refuses publishes beyond it. */
  logStreamMaxBytes?: number;
}

/** Connects to NATS (reconnecting forever) and makes sure the event and log streams exist. */
export async function connectBus(url: string, prefix: string, name: string, logger: Logger, options: BusOptions = {}): Promise<Bus> {
  // noAsyncTraces: no Error (with its stack) built for every request, only to be dropped when it succeeds
  const nc = await connect({ ...natsServers(url), name, maxReconnectAttempts: -1, reconnectTimeWait: 500, waitOnFirstConnect: false, noAsyncTraces: true });
  const link: BusLink = { up: true, since: performance.now() };
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type !== 'disconnect' && s.type !== 'reconnect') continue;
      link.up = s.type === 'reconnect';
      link.since = performance.now();
      logger.warn({ nats: s.type }, `nats ${s.type}`);
    }
  })();
  try {
    const jsm = await jetstreamManager(nc);
    const subs = subjects(prefix);
    await ensureStream(jsm, subs.eventsStream, subs.eventsSubjects, { max_age: 7 * DAY_NS }, logger);
    // Lines worker-manager has not stored yet are never deleted, by age or to make room: when full,
    // the stream refuses a publish and the worker holds its lines back (the job pauses) until
    // worker-manager stores and purges. Without a limit, a worker-manager down for an hour let a
    // flood take the disk (2M lines were 220 MB in seconds); with a day's max_age, one down longer lost lines.
    const maxBytes = options.logStreamMaxBytes ?? LOG_STREAM_MAX_BYTES;
    await ensureStream(jsm, subs.logsStream, subs.logsSubjects, { max_age: 0, max_bytes: maxBytes, discard: DiscardPolicy.New }, logger).catch((err: unknown) => {
      if (!String(err).includes('insufficient storage')) throw err;
      throw new Error(
        `the NATS server has no room to reserve HODEI_LOG_STREAM_MAX_BYTES (${maxBytes} bytes) for the logs stream ${subs.logsStream} (${(err as Error).message}): lower it, or raise nats-server's max_file_store`,
      );
    });
    return { nc, js: jetstream(nc), jsm, subjects: subs, link };
  } catch (err) {
    // JetStream not answering yet (a server starting up): the caller may try again with a new connection
    await nc.close().catch(() => undefined);
    throw err;
  }
}

interface StreamLimits {
  max_age: number;
  max_bytes?: number;
  discard?: DiscardPolicy;
}

async function ensureStream(jsm: JetStreamManager, name: string, subjectList: string[], limits: StreamLimits, logger: Logger): Promise<void> {
  let info;
  try {
    info = await jsm.streams.info(name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add({ name, subjects: subjectList, retention: RetentionPolicy.Limits, storage: StorageType.File, ...limits }).catch(async (addErr: unknown) => {
      // a sibling service created it between our two calls
      if (!String(addErr).includes('already in use')) throw addErr;
    });
    return;
  }
  const update = { subjects: subjectList, ...limits };
  // nats-server deletes the oldest messages to fit a lowered max_bytes, whatever the discard policy:
  // lines not stored yet. Over it now, the stream keeps room for what it holds, and the configured
  // limit applies at a start when it holds less (worker-manager purges what it stored).
  if (limits.max_bytes !== undefined && info.state.bytes >= limits.max_bytes) {
    update.max_bytes = 2 * info.state.bytes;
    logger.warn({ stream: name, bytes: info.state.bytes, max_bytes: limits.max_bytes }, `stream ${name} holds more than its byte limit: kept at twice what it holds for now`);
  }
  await jsm.streams.update(name, update);
}

function isNotFound(err: unknown): boolean {
  return String((err as Error)?.message ?? err).toLowerCase().includes('not found');
}

export async function deleteStreams(bus: Bus): Promise<void> {
  for (const name of [bus.subjects.eventsStream, bus.subjects.logsStream]) {
    await bus.jsm.streams.delete(name).catch(() => undefined);
  }
}

export const encodeJson = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
export const decodeJson = (data: Uint8Array): unknown => JSON.parse(new TextDecoder().decode(data));
