// Human input → API values: durations (30m, 1h30m), sizes (4GiB), k=v pairs, priorities.
import { InvalidArgumentError } from 'commander';

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** "90" (seconds), "90s", "30m", "1h30m", "2d", "1.5h" → seconds. */
export function parseDurationSeconds(text: string): number {
  const t = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] as string] as number);
    end = re.lastIndex;
  }
  if (end === 0 || end !== t.length) throw new InvalidArgumentError(`"${text}" is not a duration (examples: 90s, 30m, 1h30m, 2d)`);
  return total;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, ki: 1024, kib: 1024, kb: 1000,
  m: 1024 ** 2, mi: 1024 ** 2, mib: 1024 ** 2, mb: 1000 ** 2,
  g: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3, gb: 1000 ** 3,
  t: 1024 ** 4, ti: 1024 ** 4, tib: 1024 ** 4, tb: 1000 ** 4,
};

/** "4GiB", "512MB", "256Mi", "1g", "1048576" → bytes (KB/MB/GB are powers of 1000, the rest of 1024). */
export function parseSizeBytes(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const factor = m ? SIZE_UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || factor === undefined) throw new InvalidArgumentError(`"${text}" is not a size (examples: 512MB, 4GiB, 256Mi)`);
  return Math.round(Number(m[1]) * factor);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 10 ? 0 : 1)}${units[i]}`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s` : `${m}m${String(sec).padStart(2, '0')}s`;
}

export function parseInteger(min: number, max: number) {
  return (text: string): number => {
    if (!/^-?\d+$/.test(text.trim())) throw new InvalidArgumentError(`"${text}" is not a whole number`);
    const n = Number(text);
    if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
    return n;
  };
}

export function parsePositiveNumber(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`"${text}" is not a positive number`);
  return n;
}

const PRIORITY_NAMES: Record<string, number> = { low: 1, normal: 5, high: 10, critical: 15 };

/** low|normal|high|critical or 1..15. */
export function parsePriority(text: string): number {
  const named = PRIORITY_NAMES[text.trim().toLowerCase()];
  if (named !== undefined) return named;
  if (/^\d+$/.test(text.trim()) && Number(text) >= 1 && Number(text) <= 15) return Number(text);
  throw new InvalidArgumentError(`"${text}" is not a priority (low, normal, high, critical or 1..15)`);
}

/** Repeatable `--env K=V` / `--label k=v`: collected into one record. */
export function collectPair(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError(`"${value}" is not KEY=VALUE`);
  return { ...(previous ?? {}), [value.slice(0, i)]: value.slice(i + 1) };
}

/** Repeatable `--arg A`. */
export function collectList(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
