// A small Server-Sent Events reader over fetch's body stream (the parts of the format we use:
// id, event, data, comments, blank-line dispatch).
export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** `onBytes`: called for each chunk read, keep-alive comments too (the stream is delivering).
 *  `beforeRead`: awaited once every event read so far was handed out, before the next read. */
export async function* readSse(body: ReadableStream<Uint8Array>, onBytes?: () => void, beforeRead?: () => Promise<void>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
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
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        // a lone \r at the very end may be the first half of \r\n: wait for more
        if (buffer[nl] === '\r' && nl === buffer.length - 1) break;
        buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (data.length > 0 || event !== '') yield { id, event: event || 'message', data: data.join('\n') };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') event = value;
        else if (field === 'id' && !value.includes('\0')) id = value;
      }
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
