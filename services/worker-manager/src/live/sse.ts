// The SSE frame of a log line (the connection itself is @hodei/platform's SseConnection).
import { withoutNul } from '@hodei/platform';

/** The frame of one log line, built once and written to every subscriber; a NUL is sent as it is stored (U+FFFD). */
export const logFrame = (l: { seq: number; stream: string; line: string; timestamp: string; no_newline?: true | undefined }): string =>
  `id: ${l.seq}\nevent: log\ndata: ${JSON.stringify({ seq: l.seq, stream: l.stream, line: withoutNul(l.line), timestamp: l.timestamp, no_newline: l.no_newline })}\n\n`;
