// A Server-Sent Events response: headers, immediate flushing, keep-alive comments, backpressure.
import type { Request, Response } from 'express';

export const KEEP_ALIVE_MS = 15_000;

/** Resolves once a response whose socket buffer is full can take more, or is gone. */
export function drained(res: Response): Promise<void> {
  if (res.destroyed || !res.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

/** The open event streams of each app, for its stop. */
const streams = new WeakMap<object, Set<SseConnection>>();

/** Ends every event stream of the app (a stopping service): each client sees its stream end after
 *  the last event, not a connection cut. */
export function endStreams(app: object): void {
  for (const conn of [...(streams.get(app) ?? [])]) conn.end();
}

/** How many event streams of the app are open (hodei_sse_subscribers). */
export function openStreams(app: object): number {
  return streams.get(app)?.size ?? 0;
}

export class SseConnection {
  closed = false;
  private readonly keepAlive: NodeJS.Timeout;
  private readonly closeHandlers: (() => void)[] = [];
  private readonly open: Set<SseConnection>;

  constructor(
    req: Request,
    private readonly res: Response,
  ) {
    this.open = streams.get(req.app) ?? new Set();
    streams.set(req.app, this.open.add(this));
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);
    this.keepAlive = setInterval(() => this.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    this.keepAlive.unref();
    res.on('close', () => this.cleanup());
    // the client left while the route was still awaiting (a lookup, a consumer): 'close' already fired,
    // and nothing would ever run the close handlers that free what the stream holds
    if (res.destroyed) this.cleanup();
    // a HEAD has its answer in the headers; left open, it held back the next request on its connection
    if (req.method === 'HEAD') this.end();
  }

  /** Writes raw SSE text; false when the socket buffer is full (await `drained()` before more history). */
  write(text: string): boolean {
    if (this.closed) return false;
    return this.res.write(text);
  }

  event(event: string, data: unknown, id?: number | string): boolean {
    return this.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Bytes written but not yet taken by the socket (a slow or stalled client). */
  get backlog(): number {
    return this.res.writableLength;
  }

  drained(): Promise<void> {
    return this.closed ? Promise.resolve() : drained(this.res);
  }

  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.closeHandlers.push(fn);
  }

  end(): void {
    if (this.closed) return;
    this.res.end();
    this.cleanup();
  }

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    this.open.delete(this);
    clearInterval(this.keepAlive);
    for (const fn of this.closeHandlers.splice(0)) fn();
  }
}
