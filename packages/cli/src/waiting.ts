// While an execution is queued, why it waits (`waiting` in GET /api/v1/executions/:id), said once
// per reason: `hodei run -l pool=gpu` with no such worker says so instead of sitting silent. The
// scheduler gives the reason; while it is away (stopped, restarting) the execution has none, and
// hodei says the scheduler does not answer instead.
import { ExecutionStatus, z } from '@hodei/types';
import { UnreachableError } from './errors.js';
import type { HodeiClient } from './http.js';

const Queued = z.object({ status: ExecutionStatus, waiting: z.string().nullable().optional() });

/** A job placed at once never shows a reason; one that waits longer is asked about this often. */
const FIRST_CHECK_MS = 500;
const CHECK_EVERY_MS = 2000;
/** Queued this long with no reason: is the scheduler there to give one? */
const NO_REASON_MS = 2000;

export interface WaitingWatch {
  stop(): void;
}

export function watchWaiting(client: HodeiClient, executionId: string, say: (reason: string) => void): WaitingWatch {
  let stopped = false;
  let said: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  const since = Date.now();
  const check = async () => {
    try {
      const e = await client.get('worker-manager', `/api/v1/executions/${executionId}`, Queued);
      if (stopped) return;
      if (e.status !== 'queued' && e.status !== 'pending') return;
      const reason = e.waiting ?? (Date.now() - since >= NO_REASON_MS ? await schedulerAway(client) : undefined);
      if (stopped) return;
      if (reason && reason !== said) {
        said = reason;
        say(reason);
      }
    } catch {
      // the log stream being followed reports a service that cannot be reached
    }
    if (!stopped) timer = setTimeout(() => void check(), CHECK_EVERY_MS).unref();
  };
  timer = setTimeout(() => void check(), FIRST_CHECK_MS).unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Why the scheduler gives no reason, when it does not answer /health (else undefined). */
async function schedulerAway(client: HodeiClient): Promise<string | undefined> {
  const url = client.config.urls.scheduler;
  try {
    const res = await client.fetch('scheduler', 'GET', '/health', { timeoutMs: 5000 });
    await res.body?.cancel();
    if (res.ok) return undefined;
    return `the scheduler at ${url} is not healthy (${res.status}): the execution is placed once it is`;
  } catch (err) {
    const why = err instanceof UnreachableError ? err.reason : undefined;
    return `the scheduler at ${url} does not answer${why ? ` (${why})` : ''}: the execution is placed once it is back`;
  }
}
