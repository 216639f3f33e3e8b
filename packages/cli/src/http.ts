// HTTP to the three services: bearer token, problem+json → ApiError, no answer → UnreachableError,
// every response body checked against the zod schema it is supposed to match.
import { z } from '@hodei/types';
import type { CliConfig, ServiceName } from './config.js';
import { ApiError, CliError, CutOffError, UnreachableError } from './errors.js';

export type Query = Record<string, string | number | boolean | undefined | null>;

export interface RequestOptions {
  query?: Query;
  /** JSON body. */
  body?: unknown;
  /** Raw body with its content type (e.g. YAML). */
  raw?: { text: string; contentType: string };
  /** Per-request timeout; streams pass `null` (no timeout). */
  timeoutMs?: number | null;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  data: T;
  status: number;
  headers: Headers;
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
  ETIMEDOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_SOCKET: 'connection closed',
};

/** Why fetch failed, in a few words. */
export function networkReason(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string; errors?: { code?: string }[] } };
  if (e?.name === 'TimeoutError') return 'timed out';
  const code = e?.cause?.code ?? e?.cause?.errors?.[0]?.code;
  if (code) return REASONS[code] ?? code;
  return e?.cause?.message ?? e?.message ?? 'no answer';
}

export function isAbort(err: unknown): boolean {
  return (err as { name?: string })?.name === 'AbortError';
}

export class HodeiClient {
  constructor(readonly config: CliConfig) {}

  url(service: ServiceName, path: string, query?: Query): URL {
    const url = new URL(this.config.urls[service] + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    return url;
  }

  /** The raw response of any status; throws UnreachableError when nothing answers. */
  async fetch(service: ServiceName, method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (this.config.token) headers.authorization = `Bearer ${this.config.token}`;
    let body: string | undefined;
    if (opts.raw) {
      body = opts.raw.text;
      headers['content-type'] = opts.raw.contentType;
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const signals: AbortSignal[] = [];
    if (opts.signal) signals.push(opts.signal);
    const timeout = opts.timeoutMs === undefined ? 30_000 : opts.timeoutMs;
    if (timeout !== null) signals.push(AbortSignal.timeout(timeout));
    try {
      return await fetch(this.url(service, path, opts.query), {
        method,
        headers,
        body,
        signal: signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals),
      });
    } catch (err) {
      if (isAbort(err)) throw err;
      const reason = networkReason(err);
      // the service took the request and closed the connection without answering it (it stopped a search past its time)
      if (reason === REASONS.UND_ERR_SOCKET) throw new CutOffError(service, this.config.urls[service], `${method} ${path}`, reason);
      throw new UnreachableError(service, this.config.urls[service], reason);
    }
  }

  /** A request whose 2xx body must match `schema`; any other status becomes an ApiError. */
  async request<S extends z.ZodType>(
    service: ServiceName,
    method: string,
    path: string,
    schema: S | null,
    opts: RequestOptions = {},
  ): Promise<ApiResponse<z.infer<S>>> {
    const res = await this.fetch(service, method, path, opts);
    const text = await res.text().catch((err: unknown) => {
      throw new CutOffError(service, this.config.urls[service], `${method} ${path}`, networkReason(err));
    });
    if (!res.ok) throw problemError(service, this.config.urls[service], res, text, { route: `${method} ${path}`, token: this.config.token !== undefined });
    let json: unknown = undefined;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        throw new CliError(`the ${service} answered ${method} ${path} with something that is not JSON`);
      }
    }
    if (!schema) return { data: json as z.infer<S>, status: res.status, headers: res.headers };
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
      throw new CliError(`unexpected answer from the ${service} to ${method} ${path}`, 1, issues);
    }
    return { data: parsed.data, status: res.status, headers: res.headers };
  }

  /** The error a non-2xx answer already received stands for (a stream asked for with fetch). */
  async errorOf(service: ServiceName, method: string, path: string, res: Response): Promise<CliError> {
    const text = await res.text().catch(() => '');
    return problemError(service, this.config.urls[service], res, text, { route: `${method} ${path}`, token: this.config.token !== undefined });
  }

  get<S extends z.ZodType>(service: ServiceName, path: string, schema: S, query?: Query) {
    return this.request(service, 'GET', path, schema, { query }).then((r) => r.data);
  }

  send<S extends z.ZodType>(service: ServiceName, method: 'POST' | 'PATCH' | 'PUT' | 'DELETE', path: string, schema: S | null, body?: unknown) {
    return this.request(service, method, path, schema, { body }).then((r) => r.data);
  }

  /** GET a list, with the total the service reports in X-Total-Count. */
  async list<S extends z.ZodType>(service: ServiceName, path: string, item: S, query?: Query): Promise<{ items: z.infer<S>[]; total: number | null }> {
    const res = await this.request(service, 'GET', path, z.array(item), { query });
    const total = res.headers.get('x-total-count');
    return { items: res.data as z.infer<S>[], total: total === null ? null : Number(total) };
  }
}

function problemError(service: ServiceName, baseUrl: string, res: Response, text: string, sent: { route: string; token: boolean }): CliError {
  let problem: { title?: string; detail?: string; errors?: { path?: string; message?: string }[] } = {};
  let json = true;
  try {
    problem = JSON.parse(text) as typeof problem;
  } catch {
    // not problem+json (a proxy page, plain text): say what status came back
    json = false;
  }
  const fields = Array.isArray(problem.errors)
    ? problem.errors.map((e) => ({ path: String(e.path ?? ''), message: String(e.message ?? '') }))
    : [];
  if (res.status === 401)
    return new ApiError(
      401,
      sent.token
        ? `the ${service} refused the token (${problem.detail ?? 'unauthorized'}): check --token / HODEI_API_TOKEN`
        : `${problem.detail ?? 'unauthorized'}: set HODEI_API_TOKEN or pass --token`,
    );
  // a URL that points at another service, or at something else: no such route there at all
  if (res.status === 404 && (!json || /^route \S+ \S+ not found$/.test(problem.detail ?? '')))
    return new ApiError(404, `${baseUrl} has no ${sent.route}: is it the ${service}? (check --url / --${service}-url)`);
  if (res.status >= 500) {
    const what = problem.detail ?? problem.title ?? res.statusText;
    return new ApiError(res.status, `the ${service} at ${baseUrl} answered ${res.status}: ${what}`, [], res.status === 503 ? retryAfterMs(res.headers.get('retry-after')) : null);
  }
  return new ApiError(res.status, problem.detail ?? problem.title ?? `${res.status} ${res.statusText}`, fields);
}

/** Retry-After as seconds or an HTTP date, in ms from now; null when absent or unreadable. */
function retryAfterMs(value: string | null): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}
