// A small client for one service calling another's REST API (e.g. worker-manager reading a job
// from the orchestrator). Failures become typed errors the caller can pass on.
import { BadGatewayError, HttpError, ServiceUnavailableError } from './errors.js';
import { currentTraceparent } from './telemetry/trace.js';

const notTaken = new WeakSet<Error>();

/**
 * Whether a request that failed surely did nothing there, so that sending it again is safe: the
 * service refused the connection (not running, restarting) or answered 503 (starting, stopping, or
 * missing a dependency). Not so after a time-out or a reset connection: it may have acted.
 */
export function requestNotTaken(err: unknown): boolean {
  return err instanceof Error && notTaken.has(err);
}

export class ServiceClient {
  constructor(
    readonly baseUrl: string,
    private readonly token?: string,
    private readonly timeoutMs = 5000,
  ) {}

  /** GET a resource; `null` when the service answers 404. */
  async find<T>(path: string): Promise<T | null> {
    const res = await this.request('GET', path);
    if (res.status === 404) return null;
    return this.json<T>(res, path);
  }

  async send<T>(method: 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    return this.json<T>(res, path);
  }

  private async request(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    // fetch is not instrumented: carry the trace to the other service by hand
    const traceparent = currentTraceparent();
    if (traceparent) headers.traceparent = traceparent;
    try {
      return await fetch(new URL(path, this.baseUrl), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const refused = (err as { cause?: { code?: unknown } }).cause?.code === 'ECONNREFUSED';
      const e = new ServiceUnavailableError(`${this.baseUrl} did not answer (${refused ? 'connection refused' : (err as Error).message})`);
      if (refused) notTaken.add(e);
      throw e;
    }
  }

  private async json<T>(res: Response, path: string): Promise<T> {
    const text = await res.text();
    if (res.ok) return (text ? JSON.parse(text) : undefined) as T;
    let detail = text.slice(0, 500);
    try {
      detail = (JSON.parse(text) as { detail?: string }).detail ?? detail;
    } catch {
      // not problem+json: keep the raw text
    }
    if (res.status >= 400 && res.status < 500) throw new HttpError(res.status, res.statusText, detail);
    const e = new BadGatewayError(`${this.baseUrl}${path} answered ${res.status}: ${detail}`);
    if (res.status === 503) notTaken.add(e);
    throw e;
  }
}
