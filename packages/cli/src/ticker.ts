// The line a terminal shows while hodei waits for one long answer (a cleanup takes seconds to tens of
// seconds and the API tells nothing before it ends): what it waits for, and for how long so far.
import type { Output } from './output.js';
import { formatDuration } from './parse.js';

/** How long a wait must last for its end to be told (`counted in 8.20s`): a quick one says nothing more. */
const TELL_END_AFTER_MS = 1000;

export interface Ticker {
  /** Erase the line; with `done`, and when the wait was long, say `${done} in 8.20s` on a line of its own. */
  stop(done?: string): void;
}

/** Draws `${text}… 3s` on `stream` (a terminal's stderr), redrawn every second until stopped. */
export function startTicker(stream: NodeJS.WriteStream, text: string, startedAt = Date.now()): Ticker {
  const draw = () => stream.write(`\r\x1b[2K${text}… ${Math.floor((Date.now() - startedAt) / 1000)}s`);
  draw();
  const timer = setInterval(draw, 1000);
  timer.unref();
  let stopped = false;
  return {
    stop(done) {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      const elapsed = Date.now() - startedAt;
      stream.write(`\r\x1b[2K${done && elapsed >= TELL_END_AFTER_MS ? `${done} in ${formatDuration(elapsed)}\n` : ''}`);
    },
  };
}

/** The line on a terminal's stderr; none at all through a pipe or with --json. */
export function tickerFor(out: Output, text: string): Ticker {
  return out.json || !out.config.tty.stderr ? { stop: () => undefined } : startTicker(process.stderr, text);
}
