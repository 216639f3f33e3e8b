// Publishing to NATS while it is away: every held-back status and log message is retried until it
// goes through, and without this each retry logged a warning with a stack. Now an outage is said
// once when a publish first fails, and once when a publish goes through again. The same for a logs
// stream that refuses lines for being full.
import type { Logger } from '@hodei/platform';

const NATS_AWAY = {
  failed: 'NATS unreachable: holding back status and log messages, retrying until it answers',
  recovered: 'NATS reachable again: held-back messages are going out',
};

/** The logs stream refuses a publish for being full (HODEI_LOG_STREAM_MAX_BYTES): nothing stores lines. */
export const STREAM_FULL = {
  failed: "the logs stream is full (HODEI_LOG_STREAM_MAX_BYTES): worker-manager is not storing lines (down, or its PostgreSQL is); holding the jobs' output back (they pause) and retrying",
  recovered: "the logs stream has room again: held-back lines are going out",
};

export const isStreamFull = (err: unknown): boolean => /maximum bytes exceeded/i.test((err as Error)?.message ?? '');

export class PublishOutage {
  private failingSince: number | null = null;
  private recoveredAt = -Infinity;

  constructor(
    private readonly logger: Logger,
    private readonly says = NATS_AWAY,
  ) {}

  /** A publish (started at `startedAt`, `performance.now()`) failed: a new outage, unless one is
   *  known or the publish was sent during the last one (its time-out may come after the recovery). */
  failed(err: unknown, startedAt: number): void {
    if (this.failingSince !== null || startedAt < this.recoveredAt) return;
    this.failingSince = startedAt;
    this.logger.warn({ error: (err as Error).message }, this.says.failed);
  }

  /** A publish (started at `startedAt`) went through: after an outage, unless it was sent before the outage began. */
  succeeded(startedAt: number): void {
    if (this.failingSince === null || startedAt < this.failingSince) return;
    this.logger.info({ outage_ms: Math.round(performance.now() - this.failingSince) }, this.says.recovered);
    this.failingSince = null;
    this.recoveredAt = performance.now();
  }
}
