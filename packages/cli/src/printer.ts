// How one log line looks: `HH:MM:SS.mmm [OUT] line` on stdout, `[ERR]` on stderr.
import type { LogLine } from '@hodei/types';
import { clock, type Output } from './output.js';
import { parseProgress, type ProgressBar } from './progress.js';

export interface PrintOptions {
  timestamps: boolean;
  raw: boolean;
  /** When set, `::progress` lines move the bar instead of being printed. */
  bar: ProgressBar | null;
}

export class LogPrinter {
  count = 0;
  constructor(
    private readonly out: Output,
    private readonly opts: PrintOptions,
  ) {}

  print(l: LogLine): void {
    this.count++;
    const bar = this.opts.bar;
    if (bar) {
      const p = parseProgress(l.line);
      if (p) {
        bar.update(p);
        return;
      }
    }
    const err = l.stream === 'stderr';
    const paint = err ? this.out.err : this.out.out;
    let text: string;
    if (this.opts.raw) text = l.line;
    else {
      const tag = err ? paint('red', '[ERR]') : paint('cyan', '[OUT]');
      text = this.opts.timestamps ? `${paint('gray', clock(l.timestamp))} ${tag} ${l.line}` : `${tag} ${l.line}`;
    }
    bar?.clear();
    (err ? process.stderr : process.stdout).write(`${text}\n`);
    bar?.restore();
  }

  /** A note of hodei's own on stderr, between the lines (never under the progress bar). */
  note(text: string): void {
    this.opts.bar?.clear();
    this.out.note(text);
    this.opts.bar?.restore();
  }
}
