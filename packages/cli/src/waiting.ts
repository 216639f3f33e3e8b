// While an execution is queued, why it waits (`waiting` in GET /api/v1/executions/:id), said once
// per reason: `hodei run -l pool=gpu` with no such worker says so instead of sitting silent.
import { ExecutionStatus, z } from '@hodei/types';
import type { HodeiClient } from './http.js';

const Queued = z.object({ status: ExecutionStatus, waiting: z.string().nullable().optional() });

/** A job placed at once never shows a reason; one that waits longer is asked about this often. */
const FIRST_CHECK_MS = 500;
const CHECK_EVERY_MS = 2000;

export interface WaitingWatch {
  stop(): void;
}

export function watchWaiting(client: HodeiClient, executionId: string, say: (reason: string) => void): WaitingWatch {
  let stopped = false;
  let said: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    try {
      const e = await client.get('worker-manager', `/api/v1/executions/${executionId}`, Queued);
      if (stopped) return;
      if (e.status !== 'queued' && e.status !== 'pending') return;
      if (e.waiting && e.waiting !== said) {
        said = e.waiting;
        say(e.waiting);
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
