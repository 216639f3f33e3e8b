// The agent's NATS connection: the first one waits for a server that does not answer yet (a host
// started before NATS), says so while it waits, and can be given up (a signal to the agent).
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { hideNatsCredentials, natsServers, type Logger } from '@hodei/platform';

/** How long the first connection may take before the agent says it waits, and then how often it repeats it. */
export const NATS_WAIT_NOTE_MS = 2000;
const NATS_WAIT_REPEAT_MS = 30_000;

export class NatsWaitAborted extends Error {}

export async function connectNats(url: string, name: string, logger: Logger, signal?: AbortSignal): Promise<NatsConnection> {
  const connecting = connect({
    ...natsServers(url),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    noAsyncTraces: true, // no Error (with its stack) built for every JetStream publish
  });
  const started = performance.now();
  const shown = hideNatsCredentials(url);
  const note = () => {
    logger.warn({ nats: shown, waited_s: Math.round((performance.now() - started) / 1000) }, `NATS at ${shown} does not answer; waiting for it (check NATS_URL, or hodei worker --nats)`);
    timer = setTimeout(note, NATS_WAIT_REPEAT_MS);
  };
  let timer = setTimeout(note, NATS_WAIT_NOTE_MS);
  let onAbort: () => void = () => undefined;
  try {
    return await new Promise<NatsConnection>((resolve, reject) => {
      onAbort = () => reject(new NatsWaitAborted(`stopped while waiting for NATS at ${shown}`));
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      connecting.then(resolve, reject);
    });
  } catch (err) {
    // a connection that comes after all is not wanted any more
    if (err instanceof NatsWaitAborted) void connecting.then((nc) => nc.close()).catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
