// `::progress` lines and the bar a terminal shows below the streaming output.
import { formatDuration } from './parse.js';
import type { Paint } from './output.js';

export interface ProgressState {
  current: number | null;
  total: number | null;
  percent: number | null;
  message: string | null;
}

/** `::progress 3/10 message` or `::progress 42% message`; null for any other line. */
export function parseProgress(line: string): ProgressState | null {
  const m = /^::progress\s+(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)(?:\s+(.*))?$/.exec(line.trim());
  if (m) {
    const current = Number(m[1]);
    const total = Number(m[2]);
    return { current, total, percent: total > 0 ? Math.min(100, (current / total) * 100) : null, message: m[3] ?? null };
  }
  const p = /^::progress\s+(\d+(?:\.\d+)?)%(?:\s+(.*))?$/.exec(line.trim());
  if (p) return { current: null, total: null, percent: Math.min(100, Number(p[1])), message: p[2] ?? null };
  return null;
}

export class ProgressBar {
  private state: ProgressState | null = null;
  private shown = false;
  private firstAt: number | null = null;
  private firstPercent = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly paint: Paint,
    private readonly startedAt: number,
  ) {}

  update(state: ProgressState): void {
    if (this.firstAt === null) {
      this.firstAt = Date.now();
      this.firstPercent = state.percent ?? 0;
      // elapsed and ETA keep moving even when the job is quiet
      this.timer = setInterval(() => this.draw(), 1000);
      this.timer.unref();
    }
    this.state = state;
    this.draw();
  }

  /** Erase the bar so a log line can take its place; `restore` draws it again below. */
  clear(): void {
    if (this.shown) this.stream.write('\r\x1b[2K');
    this.shown = false;
  }

  restore(): void {
    if (this.state) this.draw();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.clear();
    this.state = null;
  }

  render(now = Date.now()): string {
    const s = this.state;
    if (!s) return '';
    const cols = this.stream.columns || 80; // 0 on a terminal that reports no size
    const elapsedMs = now - this.startedAt;
    let eta = '';
    if (s.percent !== null && s.percent > this.firstPercent && s.percent < 100 && this.firstAt !== null) {
      const rate = (s.percent - this.firstPercent) / Math.max(1, now - this.firstAt);
      eta = ` ETA ${formatDuration((100 - s.percent) / rate)}`;
    }
    const pct = s.percent === null ? '  ?%' : `${s.percent.toFixed(0).padStart(3)}%`;
    const count = s.current !== null && s.total !== null ? ` ${s.current}/${s.total}` : '';
    const tail = `${pct}${count} ${formatDuration(elapsedMs)}${eta}`;
    const barWidth = Math.max(10, Math.min(30, cols - tail.length - 10));
    const filled = s.percent === null ? 0 : Math.round((s.percent / 100) * barWidth);
    const bar = this.paint('cyan', '█'.repeat(filled)) + this.paint('gray', '░'.repeat(barWidth - filled));
    let msg = s.message ? ` ${s.message}` : '';
    const room = cols - 1 - (barWidth + 2 + tail.length);
    if (msg.length > room) msg = room > 2 ? `${msg.slice(0, room - 1)}…` : '';
    return `[${bar}]${tail}${this.paint('dim', msg)}`;
  }

  private draw(): void {
    if (!this.state) return;
    this.stream.write(`\r\x1b[2K${this.render()}`);
    this.shown = true;
  }
}
