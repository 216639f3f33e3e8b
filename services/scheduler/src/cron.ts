// Cron validation and next-run computation (croner: 5 fields, 6 with seconds, @nicknames, IANA zones).
import { BadRequestError } from '@hodei/platform';
import { Cron } from 'croner';

export function assertTimezone(timezone: string): void {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new BadRequestError(`unknown time zone ${timezone}`, [{ path: 'timezone', message: `unknown IANA time zone "${timezone}"` }]);
  }
}

/** A paused croner instance for `pattern`, or a 400 naming `cron`. */
export function parseCron(pattern: string, timezone: string): Cron {
  assertTimezone(timezone);
  try {
    return new Cron(pattern, { timezone, paused: true });
  } catch (err) {
    const message = (err as Error).message.replace(/^CronPattern: /, '');
    throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
  }
}

/** The first firing strictly after `after`, or null when the pattern never fires again. */
export function nextCronRun(pattern: string, timezone: string, after: Date = new Date()): Date | null {
  return parseCron(pattern, timezone).nextRun(after);
}
