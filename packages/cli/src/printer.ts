// How one log line looks: `HH:MM:SS.mmm [OUT] line` on stdout, `[ERR]` on stderr.
import { rawText, type LogLine } from '@hodei/types';
import { clock, visible, type Output } from './output.js';
import { parseProgress, type ProgressBar } from './progress.js';

export interface PrintOptions {
  timestamps: boolean;
  raw: boolean;
  /** When set, `::progress` lines move the bar instead of being printed on the terminal (a file or a pipe still gets them). */
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
    const err = l.stream === 'stderr';
    if (bar) {
      const p = parseProgress(l.line);
      if (p) {
        bar.update(p);
        if (this.out.config.tty[err ? 'stderr' : 'stdout']) return;
      }
    }
    const paint = err ? this.out.err : this.out.out;
    let text: string;
    if (this.opts.raw) text = rawText(l);
    else {
      const tag = err ? paint('red', '[ERR]') : paint('cyan', '[OUT]');
      const line = visible(l.line, err ? this.out.config.color.stderr : this.out.config.color.stdout);
      text = this.opts.timestamps ? `${paint('gray', clock(l.timestamp))} ${tag} ${line}` : `${tag} ${line}`;
    }
    bar?.clear();
    (err ? process.stderr : process.stdout).write(this.opts.raw ? text : `${text}\n`);
    bar?.restore();
  }

  /** A note of hodei's own on stderr, between the lines (never under the progress bar). */
  note(text: string): void {
    this.opts.bar?.clear();
    this.out.note(text);
    this.opts.bar?.restore();
  }
}
