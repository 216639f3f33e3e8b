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
