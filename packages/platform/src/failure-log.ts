// A background loop's failure that comes back on every retry while something it needs is away (a
// PostgreSQL outage): logged when it starts, with its error, and when the loop works again; the
// repeats in between at debug only.
import type { Logger } from './logger.js';

export class FailureLog {
  private failingSince: number | null = null;

  /** `what` names the work ('storing log lines'), `then` what follows a failure ('they will be redelivered'). */
  constructor(
    private readonly logger: Logger,
    private readonly what: string,
    private readonly then = 'it is tried again',
  ) {}

  failed(err: unknown, fields: Record<string, unknown> = {}): void {
    if (this.failingSince !== null) return void this.logger.debug({ ...fields, err }, `${this.what} failed again`);
    this.failingSince = performance.now();
    this.logger.error({ ...fields, err }, `${this.what} failed; ${this.then} (said again only once it has worked)`);
  }

  worked(): void {
    if (this.failingSince === null) return;
    this.logger.info({ failed_for_ms: Math.round(performance.now() - this.failingSince) }, `${this.what} works again`);
    this.failingSince = null;
  }
}
