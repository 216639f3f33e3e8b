// `::progress CURRENT/TOTAL optional message` (TOTAL > 0) or `::progress 42% optional message`
// (more than 100 % counts as 100).
import type { Progress } from '@hodei/types';

const NUM = '(\\d+(?:\\.\\d+)?)';
const PROGRESS_RE = new RegExp(`^::progress\\s+(?:${NUM}\\s*/\\s*${NUM}|${NUM}\\s*%)(?:\\s+(.*\\S))?\\s*$`);

export function parseProgress(text: string, now: string): Progress | null {
  const line = text.includes('\r') ? shownLast(text) : text;
  if (!line.startsWith('::progress')) return null;
  const m = PROGRESS_RE.exec(line);
  if (!m) return null;
  const message = m[4] ?? null;
  if (m[3] !== undefined) {
    const percent = Number(m[3]);
    if (!Number.isFinite(percent)) return null;
    return { current: null, total: null, percent: Math.min(100, percent), message, updated_at: now };
  }
  const current = Number(m[1]);
  const total = Number(m[2]);
  // a total of 0, or a number too long to hold, is no progress (it showed as 5 of 0, or of null)
  if (!(total > 0) || !Number.isFinite(current) || !Number.isFinite(total)) return null;
  const percent = Math.min(100, Math.round((current / total) * 10_000) / 100);
  return { current, total, percent, message, updated_at: now };
}

/** A line a job redrew with \r (`::progress 1/3\r::progress 2/3\r…`, one line in the log): what the
 *  terminal shows at the end, its last part that is not blank. */
function shownLast(line: string): string {
  const parts = line.split('\r');
  for (let i = parts.length - 1; i > 0; i--) if (parts[i]!.trim() !== '') return parts[i]!;
  return parts[0]!;
}
