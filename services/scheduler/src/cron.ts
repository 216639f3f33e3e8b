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

const NICKNAMES: Record<string, string> = { '@midnight': '0 0 * * *' };

/** `5L` (Quartz: the last Friday of the month) as croner writes it, `5#L`; croner read `5L` as every Friday. */
function lastWeekday(dayOfWeek: string): string {
  return dayOfWeek
    .split(',')
    .map((d) => (/^[^#]+L$/i.test(d) && d.toUpperCase() !== 'L' ? `${d.slice(0, -1)}#L` : d))
    .join(',');
}

/**
 * The pattern as croner should read it. `?` (Quartz: no specific value, for a day field) is `*`:
 * croner would put the moment of parsing in its place, so `0 0 ? * *` fired monthly, on the day it
 * was created. `@midnight` is `@daily`, as in Vixie cron.
 */
function normalize(pattern: string): string {
  const p = pattern.trim();
  const nickname = NICKNAMES[p.toLowerCase()];
  if (nickname) return nickname;
  const fields = p.split(/\s+/).map((f) => (f === '?' ? '*' : f));
  if (fields.length === 5 || fields.length === 6) fields[fields.length - 1] = lastWeekday(fields.at(-1)!);
  return fields.join(' ');
}

/** A paused croner instance for `pattern`, or a 400 naming `cron`. */
export function parseCron(pattern: string, timezone: string): Cron {
  assertTimezone(timezone);
  try {
    return new Cron(normalize(pattern), { timezone, paused: true });
  } catch (err) {
    const message = (err as Error).message.replace(/^CronPattern: /, '');
    throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
  }
}

/** croner's next run; null also when its search overflows the stack, which it does (instead of
 *  answering null) for some patterns that never match: `0 0 31 4,6,9,11 *`. */
function nextRun(cron: Cron, after: Date): Date | null {
  try {
    return cron.nextRun(after);
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** The first firing strictly after `after`; a 400 naming `cron` for a pattern that is invalid or
 *  can never fire (`0 0 31 2 *`: February 31). */
export function firstCronRun(pattern: string, timezone: string, after: Date): Date {
  const next = nextRun(parseCron(pattern, timezone), after);
  if (next !== null) return next;
  const message = 'never fires: no date matches it (e.g. February 31)';
  throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
}

/** The first firing strictly after `after`, or null when the pattern never fires again. */
export function nextCronRun(pattern: string, timezone: string, after: Date = new Date()): Date | null {
  return nextRun(parseCron(pattern, timezone), after);
}
