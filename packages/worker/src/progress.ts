// `::progress CURRENT/TOTAL optional message` or `::progress 42% optional message`.
import type { Progress } from '@hodei/types';

const NUM = '(\\d+(?:\\.\\d+)?)';
const PROGRESS_RE = new RegExp(`^::progress\\s+(?:${NUM}\\s*/\\s*${NUM}|${NUM}\\s*%)(?:\\s+(.*\\S))?\\s*$`);

export function parseProgress(line: string, now: string): Progress | null {
  if (!line.startsWith('::progress')) return null;
  const m = PROGRESS_RE.exec(line);
  if (!m) return null;
  const message = m[4] ?? null;
  if (m[3] !== undefined) {
    const percent = Math.min(100, Number(m[3]));
    return { current: null, total: null, percent, message, updated_at: now };
  }
  const current = Number(m[1]);
  const total = Number(m[2]);
  const percent = total > 0 ? Math.min(100, Math.round((current / total) * 10_000) / 100) : null;
  return { current, total, percent, message, updated_at: now };
}
