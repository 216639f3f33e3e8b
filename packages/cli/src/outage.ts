// A service away for a moment (restarting, or answering 503 while its database or NATS is away):
// what a follower (`logs -f`, `events -f`) waits out, saying so, rather than dies of.
import { ApiError, CliError, UnreachableError } from './errors.js';

/** How long a follower waits for the service to answer again before it gives up. */
export const GIVE_UP_MS = 60_000;

/** Nothing answered, or the service answered 503 ("try again"). */
export function isOutage(err: unknown): err is CliError {
  return err instanceof UnreachableError || (err instanceof ApiError && err.status === 503);
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `fn`, again while it fails with an outage for up to `giveUpMs`; `onDown` hears the first one's reason. */
export async function untilAnswered<T>(fn: () => Promise<T>, onDown: (reason: string) => void, giveUpMs = GIVE_UP_MS): Promise<T> {
  const since = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isOutage(err) || Date.now() - since > giveUpMs) throw err;
      if (attempt === 1) onDown(err.message);
      await pause(Math.min(2000, 200 * attempt));
    }
  }
}

/**
 * A followed stream's outage: from the first failed try (or the stream breaking) until a connection
 * delivers an event again. Each outage is timed and backed off on its own, so a long follow survives
 * any number of short outages, and a service that accepts the stream but never delivers one counts
 * as away, not back.
 */
export class Outage {
  private since: number | null = null;
  private tries = 0;

  constructor(private readonly giveUpMs = GIVE_UP_MS) {}

  get active(): boolean {
    return this.since !== null;
  }

  /** Another try failed: false once the outage has lasted longer than giveUpMs. */
  failed(): boolean {
    this.since ??= Date.now();
    this.tries++;
    return Date.now() - this.since <= this.giveUpMs;
  }

  /** The wait before the next try: 100 ms after the first failure of an outage, growing to 2 s. */
  backOff(): Promise<void> {
    return pause(Math.min(2000, 100 * this.tries));
  }

  /** A connection delivered: the outage is over. */
  over(): void {
    this.since = null;
    this.tries = 0;
  }
}

/**
 * `fn` (a creation), again while the service answers 503 with Retry-After: it did nothing and asks
 * to be tried again then. Waits as long as a follower does at most; `onWait` hears the first reason.
 * Any other failure, a 503 without Retry-After among them, may have done something: not retried.
 */
export async function whileNothingDone<T>(fn: () => Promise<T>, onWait: (reason: string) => void, giveUpMs = GIVE_UP_MS): Promise<T> {
  const since = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 503 || err.retryAfterMs === null) throw err;
      const wait = Math.min(Math.max(err.retryAfterMs, 100), 10_000);
      if (Date.now() - since + wait > giveUpMs) throw err;
      if (attempt === 1) onWait(err.message);
      await pause(wait);
    }
  }
}
