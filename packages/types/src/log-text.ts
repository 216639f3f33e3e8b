// A log line as the bytes the job wrote, for `--raw` and `Accept: text/plain`.

/** A longer line is cut into pieces of at most this many bytes (the worker agent does it). */
export const MAX_LINE_BYTES = 64 * 1024;
/** Ends every piece of a cut line but the last. */
export const LINE_CONTINUES_SUFFIX = ' [line continues]';

/** A piece of a cut line: the mark right after a full piece (a cut moves back at most 3 bytes, to a
 *  UTF-8 boundary). A line the job wrote ending in the same words is almost never that long. */
export function continues(line: string): boolean {
  if (!line.endsWith(LINE_CONTINUES_SUFFIX)) return false;
  const bytes = Buffer.byteLength(line) - LINE_CONTINUES_SUFFIX.length;
  return bytes > MAX_LINE_BYTES - 4 && bytes <= MAX_LINE_BYTES;
}

/** The line's bytes as written: the pieces of a cut line join again, and a last line the job ended
 *  without a newline gets none. */
export function rawText(l: { line: string; no_newline?: boolean | undefined }): string {
  if (continues(l.line)) return l.line.slice(0, -LINE_CONTINUES_SUFFIX.length);
  return l.no_newline ? l.line : `${l.line}\n`;
}
