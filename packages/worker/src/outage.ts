// Publishing to NATS while it is away: every held-back status and log message is retried until it
// goes through, and without this each retry logged a warning with a stack. Now an outage is said
// once when a publish first fails, and once when a publish goes through again.
import type { Logger } from '@hodei/platform';

export class PublishOutage {
  private failingSince: number | null = null;
  private recoveredAt = -Infinity;

  constructor(private readonly logger: Logger) {}

  /** A publish (started at `startedAt`, `performance.now()`) failed: a new outage, unless one is
   *  known or the publish was sent during the last one (its time-out may come after the recovery). */
  failed(err: unknown, startedAt: number): void {
    if (this.failingSince !== null || startedAt < this.recoveredAt) return;
    this.failingSince = startedAt;
    this.logger.warn({ error: (err as Error).message }, 'NATS unreachable: holding back status and log messages, retrying until it answers');
  }

  /** A publish (started at `startedAt`) went through: after an outage, unless it was sent before the outage began. */
  succeeded(startedAt: number): void {
    if (this.failingSince === null || startedAt < this.failingSince) return;
    this.logger.info({ outage_ms: Math.round(performance.now() - this.failingSince) }, 'NATS reachable again: held-back messages are going out');
    this.failingSince = null;
    this.recoveredAt = performance.now();
  }
}
