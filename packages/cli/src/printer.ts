// How one log line looks: `HH:MM:SS.mmm [OUT] line` on stdout, `[ERR]` on stderr.
import { rawText, type LogLine } from '@hodei/types';
import { clock, stderr, visible, type Output } from './output.js';
import { parseProgress, type ProgressBar } from './progress.js';

export interface PrintOptions {
  timestamps: boolean;
  raw: boolean;
  /** When set, `::progress` lines move the bar instead of being printed on the terminal (a file or a pipe still gets them). */
  bar: ProgressBar | null;
}

/** What the printer holds before it writes it: a few pages of a fast job's output. */
const HOLD_CHARS = 64 * 1024;

/**
 * Lines are gathered and written a batch at a time (each write is a system call: one per line was
 * most of hodei's time on a job printing fast): the owner calls flush() once the lines at hand are
 * printed, and before it writes anything of its own.
 */
export class LogPrinter {
  count = 0;
  private held = '';
  private heldFor: NodeJS.WriteStream = process.stdout;
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
        // the lines before it are on the screen before the bar moves
        this.flush();
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
      text = `${this.opts.timestamps ? `${paint('gray', clock(l.timestamp))} ${tag} ${line}` : `${tag} ${line}`}\n`;
    }
    const stream = err ? stderr : process.stdout;
    // stdout and stderr lines stay in the order they came
    if (stream !== this.heldFor) this.flush();
    this.heldFor = stream;
    this.held += text;
    if (this.held.length >= HOLD_CHARS) this.flush();
  }

  /** Writes the lines held (above the progress bar). */
  flush(): void {
    if (this.held === '') return;
    this.opts.bar?.clear();
    this.heldFor.write(this.held);
    this.opts.bar?.restore();
    this.held = '';
  }

  /** A note of hodei's own on stderr, between the lines (never under the progress bar). */
  note(text: string): void {
    this.flush();
    this.opts.bar?.clear();
    this.out.note(text);
    this.opts.bar?.restore();
  }
}
