// Test helpers: JSON requests against a running service, and a small stand-in for worker-manager's
// REST API (the orchestrator only calls it over HTTP) that records what it was asked.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '@hodei/platform';

export interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

export async function call(base: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export const fieldPaths = (r: Reply): string[] => ((r.body?.errors ?? []) as Array<{ path: string }>).map((e) => e.path);

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
  authorization: string | undefined;
}

type FakeReply = { status: number; body?: unknown } | undefined;
export type FakeHandler = (req: RecordedRequest) => FakeReply | Promise<FakeReply>;

export interface FakeWorkerManager {
  url: string;
  requests: RecordedRequest[];
  handler: FakeHandler;
  close: () => Promise<void>;
}

/** What the stand-in answers where its handler does not: an empty worker-manager's cleanup (every
 *  cleanup, dry runs included, asks for its counts) and a scheduler with no schedule (cleanup asks
 *  which jobs schedules run), else 404. */
function unhandled(req: RecordedRequest): NonNullable<FakeReply> {
  if (req.method === 'POST' && req.path === '/api/v1/executions/cleanup') return { status: 200, body: { executions: 0, older_executions: 0, adhoc_executions: 0 } };
  if (req.method === 'GET' && req.path === '/api/v1/schedules') return { status: 200, body: [] };
  return { status: 404, body: { title: 'Not Found', status: 404 } };
}

export async function fakeWorkerManager(handler: FakeHandler = () => undefined): Promise<FakeWorkerManager> {
  const fake: FakeWorkerManager = { url: '', requests: [], handler, close: async () => undefined };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const text = Buffer.concat(chunks).toString();
      const recorded = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        body: text ? JSON.parse(text) : undefined,
        authorization: req.headers.authorization,
      };
      fake.requests.push(recorded);
      void Promise.resolve(fake.handler(recorded)).then(
        (reply) => {
          const out = reply ?? unhandled(recorded);
          res.writeHead(out.status, { 'content-type': 'application/json' });
          res.end(out.body === undefined ? '' : JSON.stringify(out.body));
        },
        (err: unknown) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ title: String(err) }));
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return fake;
}

/** A URL nothing listens on (a port we opened and closed again). */
export async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

/** Polls `check` until it returns a value (not undefined) or `ms` pass. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The pipeline run (GET /pipeline-runs/:id) once it is no longer running. */
export const runEnded = (base: string, runId: string, ms: number): Promise<any> =>
  eventually(async () => {
    const x = (await call(base, 'GET', `/api/v1/pipeline-runs/${runId}`)).body;
    return x.status !== 'running' ? x : undefined;
  }, ms);

/** An orchestrator config whose worker-manager is at `url` (a stand-in, or a dead address), and its
 *  scheduler too (cleanup asks it which jobs schedules run): no test reaches the default ports. */
export const withWorkerManager = (config: Config, url: string): Config => ({ ...config, urls: { ...config.urls, 'worker-manager': url, scheduler: url } });

export interface SseEvent {
  event: string;
  data: any;
  /** The frame's `id:` field, when it has one. */
  id?: string;
}

/** An SSE stream read frame by frame: `events` fills as they come, `ended` resolves when the server closes it. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<{ status: number; events: SseEvent[]; ended: Promise<void>; close: () => void }> {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const events: SseEvent[] = [];
  const ended = (async () => {
    if (!res.ok || !res.body) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += decoder.decode(value, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(frame)?.[1];
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          const id = /^id: (.*)$/m.exec(frame)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data), ...(id !== undefined ? { id } : {}) });
        }
      }
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    }
  })();
  void ended.catch(() => undefined); // a test that fails before awaiting it leaves no unhandled rejection
  return { status: res.status, events, ended, close: () => abort.abort() };
}
