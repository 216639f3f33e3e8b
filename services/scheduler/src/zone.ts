// UTC offsets of an IANA time zone over time: where cron crosses a daylight-saving change.

const formatters = new Map<string, Intl.DateTimeFormat>();
/** Zones are few; the cap only stops a stream of differently spelt names from growing the map. */
const MAX_FORMATTERS = 1000;
/** Offset changes are looked for in steps of this: two changes closer than a week may be missed. */
const STEP_MS = 7 * 86_400_000;

function formatter(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (!f) {
    if (formatters.size >= MAX_FORMATTERS) formatters.clear();
    const numeric = 'numeric' as const;
    f = new Intl.DateTimeFormat('en-US', { timeZone: timezone, hourCycle: 'h23', year: numeric, month: numeric, day: numeric, hour: numeric, minute: numeric, second: numeric });
    formatters.set(timezone, f);
  }
  return f;
}

/** The zone's offset from UTC at the whole second `sec` (Unix seconds), in minutes: Madrid in summer is 120. */
function offsetAtSecond(timezone: string, sec: number): number {
  const p: Record<string, number> = {};
  for (const part of formatter(timezone).formatToParts(new Date(sec * 1000))) p[part.type] = Number(part.value);
  const local = Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
  return Math.round((local / 1000 - sec) / 60);
}

export function offsetAt(timezone: string, at: Date): number {
  return offsetAtSecond(timezone, Math.floor(at.getTime() / 1000));
}

/** The first instant after `from`, and not after `until`, at which the zone's offset is no longer `offset`; null if none. */
export function nextOffsetChange(timezone: string, offset: number, from: Date, until: Date): Date | null {
  let lo = Math.floor(from.getTime() / 1000) + 1; // offsets change on whole seconds
  const end = Math.floor(until.getTime() / 1000);
  if (lo > end) return null;
  if (offsetAtSecond(timezone, lo) !== offset) return new Date(lo * 1000);
  while (lo < end) {
    let hi = Math.min(lo + STEP_MS / 1000, end);
    if (offsetAtSecond(timezone, hi) !== offset) {
      while (hi - lo > 1) {
        const mid = lo + Math.floor((hi - lo) / 2);
        if (offsetAtSecond(timezone, mid) === offset) lo = mid;
        else hi = mid;
      }
      return new Date(hi * 1000);
    }
    lo = hi;
  }
  return null;
}
