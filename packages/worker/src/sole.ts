// One agent per worker id. Two agents given the same id (one started by hand while the other still
// runs, or one config on two hosts) would each take every assignment sent to it and run each job twice.
// Before it subscribes, the agent asks on its id's control subject whether another agent holds it.
import os from 'node:os';
import { NoRespondersError, RequestError, type NatsConnection } from '@nats-io/transport-node';
import { decodeJson, encodeJson, type Logger } from '@hodei/platform';
import { WorkerIdentity, type WorkerControl } from '@hodei/types';
import { NatsWaitAborted } from './connect.js';
import { delay } from './shipper.js';

type Holder = WorkerIdentity;

export function identity(draining: boolean): WorkerIdentity {
  return { ok: true, pid: process.pid, host: os.hostname(), draining };
}

export class WorkerIdInUse extends Error {}

const ASK_TIMEOUT_MS = 2000;
const RETRY_MS = 200;
const WAIT_NOTE_MS = 30_000;

/** Resolves once no other agent holds `id`: at once, or after the one that drains has exited. */
export async function waitForOwnId(nc: NatsConnection, subject: string, id: string, logger: Logger, signal?: AbortSignal): Promise<void> {
  let notedAt = -Infinity;
  for (;;) {
    const holder = await askHolder(nc, subject);
    if (!holder) return;
    const who = holder.pid ? `pid ${holder.pid} on ${holder.host}` : 'it does not say where';
    if (!holder.draining) {
      throw new WorkerIdInUse(
        `another worker agent already runs as worker ${id} (${who}): both would run every job placed on that id; stop it first, or give this one another HODEI_WORKER_ID`,
      );
    }
    if (performance.now() - notedAt >= WAIT_NOTE_MS) {
      logger.warn({ holder_pid: holder.pid, holder_host: holder.host }, `worker ${id} (${who}) is draining; waiting for it to exit before taking its place`);
      notedAt = performance.now();
    }
    if (signal?.aborted) throw new NatsWaitAborted(`stopped while waiting for the other agent of worker ${id} to exit`);
    await delay(RETRY_MS);
  }
}

async function askHolder(nc: NatsConnection, subject: string): Promise<Holder | undefined> {
  try {
    const reply = await nc.request(subject, encodeJson({ action: 'identify' } satisfies WorkerControl), { timeout: ASK_TIMEOUT_MS });
    const parsed = WorkerIdentity.safeParse(decodeJson(reply.data));
    // an agent of an earlier version answers "invalid control message": it runs all the same
    return parsed.success ? parsed.data : { ok: true, pid: 0, host: '', draining: false };
  } catch (err) {
    if (err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) return undefined;
    // a subscriber that does not answer in time (an agent too busy) still holds the id
    return { ok: true, pid: 0, host: '', draining: false };
  }
}
