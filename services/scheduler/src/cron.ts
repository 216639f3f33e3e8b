// Cron validation and next-run computation (croner: 5 fields, 6 with seconds, @nicknames, IANA zones).
import { BadRequestError } from '@hodei/platform';
import { Cron } from 'croner';
import { nextOffsetChange, offsetAt } from './zone.js';

/** ICU still calls these zones by a name the IANA database has since replaced (a link to the new
 *  one): Intl resolves `Asia/Kolkata` to `Asia/Calcutta`. */
const ICU_OLD_NAMES: Record<string, string> = {
  'Africa/Asmera': 'Africa/Asmara',
  'America/Buenos_Aires': 'America/Argentina/Buenos_Aires',
  'America/Catamarca': 'America/Argentina/Catamarca',
  'America/Coral_Harbour': 'America/Atikokan',
  'America/Cordoba': 'America/Argentina/Cordoba',
  'America/Godthab': 'America/Nuuk',
  'America/Indianapolis': 'America/Indiana/Indianapolis',
  'America/Jujuy': 'America/Argentina/Jujuy',
  'America/Louisville': 'America/Kentucky/Louisville',
  'America/Mendoza': 'America/Argentina/Mendoza',
  'Asia/Calcutta': 'Asia/Kolkata',
  'Asia/Katmandu': 'Asia/Kathmandu',
  'Asia/Rangoon': 'Asia/Yangon',
  'Asia/Saigon': 'Asia/Ho_Chi_Minh',
  'Atlantic/Faeroe': 'Atlantic/Faroe',
  'Europe/Kiev': 'Europe/Kyiv',
  'Pacific/Enderbury': 'Pacific/Kanton',
  'Pacific/Ponape': 'Pacific/Pohnpei',
  'Pacific/Truk': 'Pacific/Chuuk',
};

/** The zone's canonical IANA name (`europe/madrid` is `Europe/Madrid`, `utc` and `Etc/UTC` are
 *  `UTC`, `Asia/Calcutta` and `asia/kolkata` are `Asia/Kolkata`), or a 400 naming `timezone`. */
export function canonicalTimezone(timezone: string): string {
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: timezone }).resolvedOptions().timeZone;
  } catch {
    throw new BadRequestError(`unknown time zone ${timezone}`, [{ path: 'timezone', message: `unknown IANA time zone "${timezone}"` }]);
  }
  return ICU_OLD_NAMES[resolved] ?? resolved;
}

const NICKNAMES: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

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

/** Each field's name and range; croner counts days and months from 0 in its messages (`0 0 32 * *`: day 31). */
const FIELDS: Record<string, [name: string, range: string, shift: number]> = {
  second: ['second', '0-59', 0],
  minute: ['minute', '0-59', 0],
  hour: ['hour', '0-23', 0],
  day: ['day of month', '1-31', 1],
  month: ['month', '1-12 or JAN-DEC', 1],
  dayOfWeek: ['day of week', '0-7 or SUN-SAT', 0],
};

/** croner's entries in order: it puts a second in front of a 5-field pattern. */
const ENTRIES = ['second', 'minute', 'hour', 'day', 'month', 'dayOfWeek'] as const;
const NAMES = /JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT/gi;

/** What a field croner calls 'illegal characters' holds that no field takes: `W` (Quartz's nearest
 *  weekday, which croner 9 lacks) by its meaning, anything else by its characters. */
function unsupportedToken(name: string, text: string): string {
  if (name === 'day' && /W/i.test(text)) return 'W (the weekday nearest a day) is not supported';
  const left = [...new Set(text.replace(NAMES, '').replace(/[\d*,\-/?L#]/gi, ''))].join('');
  return `${left || text} is not supported (digits, names, * , - / ? L #)`;
}

function cronError(err: Error, pattern: string): string {
  const message = err.message.replace(/^CronPattern: /, '');
  const out = /^Invalid value for (\w+): (-?\d+)$/.exec(message);
  const field = out && FIELDS[out[1]!];
  if (field) return `${field[0]} ${Number(out[2]) + field[2]} is out of range (${field[1]})`;
  const illegal = /^configuration entry (\d) \(.*\) contains illegal characters/.exec(message);
  if (!illegal) return message;
  const fields = pattern.split(' ');
  const name = ENTRIES[Number(illegal[1])]!;
  const text = fields[Number(illegal[1]) - (fields.length === 5 ? 1 : 0)]!;
  return `${FIELDS[name]![0]} "${text}": ${unsupportedToken(name, text)}`;
}

/** A pattern croner accepts, normalized, or a 400 naming `cron`. */
function parseCron(pattern: string, timezone: string): string {
  canonicalTimezone(timezone);
  const normalized = normalize(pattern);
  // croner takes a pattern holding ':' for a date to fire once at, and the search for its next
  // run then steps a week at a time up to it: year 275760 held the event loop for hours
  if (normalized.includes(':')) {
    const message = 'is a date-time, not a cron expression (5 or 6 fields): give run_at for one run at a date';
    throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
  }
  try {
    new Cron(normalized, { timezone, paused: true });
    return normalized;
  } catch (err) {
    const message = cronError(err as Error, normalized);
    throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
  }
}

/** croner's next run at a fixed UTC offset; null also when its search overflows the stack, which it
 *  does (instead of answering null) for some patterns that never match: `0 0 31 4,6,9,11 *`. */
function nextAtOffset(pattern: string, utcOffset: number, after: Date): Date | null {
  try {
    return new Cron(pattern, { utcOffset, paused: true }).nextRun(after);
  } catch (err) {
    if (err instanceof RangeError) return null;
    throw err;
  }
}

/** A minute or hour field starting with `*` (every 5 minutes, `@hourly`), as Vixie cron tells them apart. */
function followsRealTime(pattern: string): boolean {
  const fields = pattern.split(' ');
  const [minute, hour] = fields.length === 6 ? fields.slice(1, 3) : fields.slice(0, 2);
  return minute!.startsWith('*') || hour!.startsWith('*');
}

/**
 * The first firing strictly after `after`, walking from one UTC offset of the zone to the next.
 * Where the clocks go back, a schedule whose minute or hour is `*` fires on through the repeated
 * hour in real time (croner skipped it: an hour without firings) and any other fires once; where
 * they go forward, a time the jump skips fires at the jump (as in Vixie cron).
 */
function nextRun(pattern: string, timezone: string, after: Date): Date | null {
  let from = after;
  for (;;) {
    const offset = offsetAt(timezone, new Date(from.getTime() + 1));
    const next = nextAtOffset(pattern, offset, from);
    if (!next) return null;
    const change = nextOffsetChange(timezone, offset, from, next);
    if (!change) return next;
    const shiftMs = (offsetAt(timezone, change) - offset) * 60_000;
    if (shiftMs > 0 && !followsRealTime(pattern) && next.getTime() < change.getTime() + shiftMs) return change;
    const repeatOnce = shiftMs < 0 && !followsRealTime(pattern);
    from = new Date(change.getTime() - 1 + (repeatOnce ? -shiftMs : 0));
  }
}

/** The first firing strictly after `after`; a 400 naming `cron` for a pattern that is invalid or
 *  can never fire (`0 0 31 2 *`: February 31). */
export function firstCronRun(pattern: string, timezone: string, after: Date): Date {
  const next = nextRun(parseCron(pattern, timezone), timezone, after);
  if (next !== null) return next;
  const message = 'never fires: no date matches it (e.g. February 31)';
  throw new BadRequestError(`invalid cron expression: ${message}`, [{ path: 'cron', message }]);
}

/** The first firing strictly after `after`, or null when the pattern never fires again. */
export function nextCronRun(pattern: string, timezone: string, after: Date = new Date()): Date | null {
  return nextRun(parseCron(pattern, timezone), timezone, after);
}
