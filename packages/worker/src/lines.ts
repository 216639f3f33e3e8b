// Turns a stream of raw bytes into log lines: split on \n, a trailing \r dropped, decoded as UTF-8
// with replacement characters (invalid bytes never throw), and lines longer than MAX_LINE_BYTES
// cut into pieces. Every piece but the last of a long line ends with LINE_CONTINUES_SUFFIX, so a
// reader can join them back: strip the suffix and concatenate until a line without it. A last line
// the stream ended without \n is flagged `noNewline` (its \r kept), so the bytes can be rebuilt.

import { LINE_CONTINUES_SUFFIX, MAX_LINE_BYTES } from '@hodei/types';

export { LINE_CONTINUES_SUFFIX, MAX_LINE_BYTES };

/** `whole`: the line as the job wrote it, not one piece of a line over MAX_LINE_BYTES. */
export type LineSink = (line: string, bytes: number, noNewline: boolean, whole: boolean) => void;

const NL = 0x0a;
const CR = 0x0d;

export class LineSplitter {
  private parts: Buffer[] = [];
  private partLen = 0;
  /** Pieces of the current line were shipped already (it is over MAX_LINE_BYTES). */
  private cut = false;

  constructor(private readonly sink: LineSink) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NL, start);
      if (nl === -1) break;
      if (this.partLen === 0) {
        this.emitWhole(chunk, start, nl);
      } else {
        this.parts.push(chunk.subarray(start, nl));
        const joined = Buffer.concat(this.parts, this.partLen + (nl - start));
        this.parts = [];
        this.partLen = 0;
        this.emitWhole(joined, 0, joined.length);
      }
      start = nl + 1;
    }
    if (start < chunk.length) {
      // Copy: the chunk's memory may be a slice of a larger pooled buffer we should not pin.
      const rest = Buffer.from(chunk.subarray(start));
      this.parts.push(rest);
      this.partLen += rest.length;
      if (this.partLen > MAX_LINE_BYTES) this.emitOverlong();
    }
  }

  /** End of the stream: a last line without \n is still a line, flagged so. */
  end(): void {
    if (this.partLen === 0) return;
    const joined = Buffer.concat(this.parts, this.partLen);
    this.parts = [];
    this.partLen = 0;
    this.emitWhole(joined, 0, joined.length, true);
  }

  /** A complete line (without its \n, or the stream's last bytes: `noNewline`) in buf[start, end). */
  private emitWhole(buf: Buffer, start: number, end: number, noNewline = false): void {
    if (!noNewline && end > start && buf[end - 1] === CR) end -= 1;
    while (end - start > MAX_LINE_BYTES) {
      const cut = utf8Boundary(buf, start + MAX_LINE_BYTES, start);
      this.sink(buf.toString('utf8', start, cut) + LINE_CONTINUES_SUFFIX, cut - start, false, false);
      this.cut = true;
      start = cut;
    }
    this.sink(buf.toString('utf8', start, end), end - start, noNewline, !this.cut);
    this.cut = false;
  }

  /** The pending partial line passed the limit: ship full pieces now, keep the remainder. */
  private emitOverlong(): void {
    let joined = Buffer.concat(this.parts, this.partLen);
    let start = 0;
    while (joined.length - start > MAX_LINE_BYTES) {
      const cut = utf8Boundary(joined, start + MAX_LINE_BYTES, start);
      this.sink(joined.toString('utf8', start, cut) + LINE_CONTINUES_SUFFIX, cut - start, false, false);
      this.cut = true;
      start = cut;
    }
    joined = joined.subarray(start);
    this.parts = joined.length > 0 ? [Buffer.from(joined)] : [];
    this.partLen = joined.length;
  }
}

/** Moves a cut point back so it does not fall inside a UTF-8 sequence (at most 3 bytes back). */
function utf8Boundary(buf: Buffer, cut: number, min: number): number {
  for (let i = cut, back = 0; i > min && back < 4; i--, back++) {
    const b = buf[i];
    if (b === undefined || (b & 0xc0) !== 0x80) return i;
  }
  return cut;
}
