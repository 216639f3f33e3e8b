// The progress bar `hodei run` draws on a terminal for a job's `::progress` lines.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadCliConfig } from '../src/config.js';
import { Output, painter } from '../src/output.js';
import { LogPrinter } from '../src/printer.js';
import { ProgressBar } from '../src/progress.js';

/** A terminal's stderr, `columns` wide, that keeps what is written to it. */
function terminal(columns: number): NodeJS.WriteStream & { text: string } {
  const t = { columns, text: '', write: (s: string) => ((t.text += s), true) };
  return t as unknown as NodeJS.WriteStream & { text: string };
}

const line = (seq: number, text: string) => ({ seq, stream: 'stdout' as const, line: text, timestamp: new Date().toISOString() });

describe('the progress bar', () => {
  afterEach(() => vi.restoreAllMocks());

  it("shows the job's message on a terminal that reports no size (0 columns)", () => {
    const stderr = terminal(0);
    const bar = new ProgressBar(stderr, painter(false), Date.now());
    bar.update({ current: 2, total: 5, percent: 40, message: 'batch 2' });
    bar.stop();
    expect(stderr.text).toMatch(/\[█{12}░{18}\] 40% 2\/5 \S+ batch 2\r/);
  });

  it('keeps ::progress lines in stdout sent to a file while stderr, a terminal, shows the bar', () => {
    const written: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (written.push(String(s)), true));
    const stderr = terminal(100);
    const run = (stdoutIsTerminal: boolean) => {
      written.length = 0;
      const config = loadCliConfig({ color: false }, {}, { stdout: { isTTY: stdoutIsTerminal }, stderr: { isTTY: true } });
      const bar = new ProgressBar(stderr, painter(false), Date.now());
      const printer = new LogPrinter(new Output(config), { timestamps: false, raw: false, bar });
      for (const [i, text] of ['row 1', '::progress 1/2 half', 'row 2', '::progress 2/2'].entries()) printer.print(line(i + 1, text));
      printer.flush();
      bar.stop();
      return written.join('');
    };
    expect(run(false)).toBe('[OUT] row 1\n[OUT] ::progress 1/2 half\n[OUT] row 2\n[OUT] ::progress 2/2\n');
    expect(stderr.text).toContain(' 50% 1/2 ');
    expect(run(true)).toBe('[OUT] row 1\n[OUT] row 2\n');
  });

  it('is not drawn, nor anything coloured, on a terminal that takes no escapes (TERM=dumb); FORCE_COLOR=0 turns colours off', () => {
    const terminals = { stdout: { isTTY: true }, stderr: { isTTY: true } };
    const dumb = loadCliConfig({}, { TERM: 'dumb' }, terminals);
    expect([dumb.tty, dumb.color]).toEqual([{ stdout: false, stderr: false }, { stdout: false, stderr: false }]);
    expect(loadCliConfig({}, { TERM: 'xterm-256color', FORCE_COLOR: '0' }, terminals).color).toEqual({ stdout: false, stderr: false });
    const coloured = loadCliConfig({}, { TERM: 'xterm-256color' }, terminals);
    expect([coloured.tty, coloured.color]).toEqual([{ stdout: true, stderr: true }, { stdout: true, stderr: true }]);
  });
});
