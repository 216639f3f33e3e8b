// A small Server-Sent Events reader over fetch's body stream (the parts of the format we use:
// id, event, data, comments, blank-line dispatch).
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * The events of each chunk read, together: a job printing fast sends thousands of lines a second,
 * and handing them out one by one (a promise each) and re-cutting the buffer at every line was most
 * of hodei's own time in `logs -f`.
 * `onBytes`: called for each chunk read, keep-alive comments too (the stream is delivering).
 * `beforeRead`: awaited once every event read so far was handed out, before the next read.
 */
export async function* readSseBatches(body: ReadableStream<Uint8Array>, onBytes?: () => void, beforeRead?: () => Promise<void>): AsyncGenerator<SseEvent[]> {
  const decoder = new TextDecoder();
  let rest = '';
  let id: string | undefined;
  let event = '';
  let data: string[] = [];
  const reader = body.getReader();
  try {
    for (;;) {
      await beforeRead?.();
      const { value, done } = await reader.read();
      if (done) break;
      onBytes?.();
      const text = rest + decoder.decode(value, { stream: true });
      const events: SseEvent[] = [];
      let pos = 0;
      // the next \r at or after pos (-1: none left), looked up again only once passed
      let cr = text.indexOf('\r');
      for (;;) {
        if (cr !== -1 && cr < pos) cr = text.indexOf('\r', pos);
        const lf = text.indexOf('\n', pos);
        let end: number;
        let next: number;
        if (cr !== -1 && (lf === -1 || cr < lf)) {
          // a lone \r at the very end may be the first half of \r\n: wait for more
          if (cr === text.length - 1) break;
          end = cr;
          next = text.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
        } else if (lf !== -1) {
          end = lf;
          next = lf + 1;
        } else break;
        const line = text.slice(pos, end);
        pos = next;
        if (line === '') {
          if (data.length > 0 || event !== '') events.push({ id, event: event || 'message', data: data.length === 1 ? data[0]! : data.join('\n') });
          event = '';
          data = [];
          continue;
        }
        if (line.charCodeAt(0) === 58 /* : */) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(line.charCodeAt(colon + 1) === 32 ? colon + 2 : colon + 1);
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) id = value;
      }
      rest = text.slice(pos);
      if (events.length) yield events;
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}

/** The same, one event at a time (streams of a few events a second). */
export async function* readSse(body: ReadableStream<Uint8Array>, onBytes?: () => void, beforeRead?: () => Promise<void>): AsyncGenerator<SseEvent> {
  for await (const events of readSseBatches(body, onBytes, beforeRead)) yield* events;
}
