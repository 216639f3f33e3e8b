// The Express app every service shares: request ids and logs, CORS, token auth, body limits,
// metrics, health, OpenAPI + Swagger UI, and the one error middleware that answers problem+json.
import { isUtf8 } from 'node:buffer';
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { maxHeaderSize, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import cors from 'cors';
import express, { type ErrorRequestHandler, type Express, type Request, type RequestHandler } from 'express';
import { Gauge, Histogram, type Registry } from 'prom-client';
import swaggerUi from 'swagger-ui-express';
import type { Config } from '../config.js';
import { BadRequestError, HttpError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError, requestInstance, ServiceUnavailableError, UnauthorizedError } from '../errors.js';
import type { Logger } from '../logger.js';
import { YAML_TYPES, type Api } from './api.js';
import { openStreams } from './sse.js';

export type HealthCheck = () => Promise<void>;

export interface AppOptions {
  config: Config;
  logger: Logger;
  api: Api;
  metrics: Registry;
  checks: Record<string, HealthCheck>;
  title: string;
  description: string;
  startedAt: number;
}

const LOCALHOST_ORIGIN = /^https?:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$/;

/** RFC 9110: the scheme is case-insensitive (`bearer`, `BEARER`); RFC 6750: one or more spaces before the token. */
const BEARER = /^bearer +(.*)$/is;

/** body-parser decodes bytes that are not UTF-8 as U+FFFD: what was sent would be stored changed. */
function utf8Only(_req: unknown, _res: unknown, body: Buffer, encoding: string): void {
  if (/^utf-?8$/i.test(encoding) && !isUtf8(body)) {
    throw new BadRequestError('the request body is not valid UTF-8', [{ path: 'body', message: 'is not valid UTF-8' }]);
  }
}

function bearerAuth(token: string): RequestHandler {
  const expected = Buffer.from(token);
  return (req, res, next) => {
    const got = Buffer.from(BEARER.exec(req.headers.authorization ?? '')?.[1] ?? '');
    if (got.length === expected.length && timingSafeEqual(got, expected)) return next();
    // RFC 6750: the scheme to use, and whether the token sent was wrong
    res.setHeader('WWW-Authenticate', req.headers.authorization ? 'Bearer realm="hodei", error="invalid_token"' : 'Bearer realm="hodei"');
    next(new UnauthorizedError());
  };
}

/** Names only this machine answers to; a Host header without a port is taken too. */
const LOOPBACK_HOST = /^(localhost|[a-z0-9-]+\.localhost|127(\.\d{1,3}){3}|\[::1\])(:\d+)?$/i;

/** Without a token only this machine's names reach the API: a web page of another site whose name
 *  it re-points to 127.0.0.1 (DNS rebinding) could otherwise run commands from the user's browser. */
const loopbackHostOnly: RequestHandler = (req, _res, next) => {
  if (LOOPBACK_HOST.test(req.headers.host ?? '')) return next();
  next(new HttpError(403, 'Forbidden', `without HODEI_API_TOKEN the API answers only requests to 127.0.0.1 or localhost, not to Host ${JSON.stringify(req.headers.host ?? '')}`));
};

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())]);
}

/** Prometheus text of every metric read within 2 s: one read from a database that is down or
 *  stalled is left out of this scrape, rather than failing or holding up all the others. */
async function renderMetrics(registry: Registry, logger: Logger): Promise<string> {
  const parts = await Promise.all(
    registry.getMetricsAsArray().map(async ({ name }) => {
      try {
        return await withTimeout(registry.getSingleMetricAsString(name), 2000);
      } catch (err) {
        logger.warn({ metric: name, reason: (err as Error).message }, 'metric left out of /metrics');
        return undefined;
      }
    }),
  );
  return `${parts.filter((p) => p !== undefined).join('\n\n')}\n`;
}

export function createApp(o: AppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');

  const duration = new Histogram({
    name: 'hodei_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [o.metrics],
  });
  new Gauge({
    name: 'hodei_sse_subscribers',
    help: 'Open event streams (SSE)',
    registers: [o.metrics],
    collect() {
      this.set(openStreams(app));
    },
  });
  // One middleware for the request id, the duration histogram and the access log: a per-request
  // child logger (pino-http) cost a third of the throughput of a simple GET.
  const logAccess = o.logger.isLevelEnabled('debug');
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    const path = req.path;
    const id = (req.headers['x-request-id'] as string | undefined) ?? randomUUID();
    res.setHeader('X-Request-Id', id);
    // 'close' rather than 'finish', which never comes for a request the client gave up on (a
    // timeout, an event stream it closed); one given up before its answer started counts as 499
    res.on('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = req.route?.path ? `${req.baseUrl}${String(req.route.path)}` : (o.api.patternOf(path) ?? 'unmatched');
      const status = res.headersSent ? res.statusCode : 499;
      duration.observe({ method: req.method, route, status: String(status) }, seconds);
      // failures are logged with their error by the error handler
      if (logAccess) {
        o.logger.debug({ req_id: id, method: req.method, url: req.originalUrl, status, ms: Math.round(seconds * 1e4) / 10 }, 'request');
      }
    });
    next();
  });

  // RFC 9112: a server answers 400 to an HTTP/1.1 request without Host
  app.use((req, _res, next) => {
    if (req.httpVersion !== '1.1' || req.headers.host !== undefined) return next();
    next(new BadRequestError('the request has no Host header', [{ path: 'Host', message: 'is required in an HTTP/1.1 request' }]));
  });

  const corsHandler = cors({
    origin: (origin, cb) => cb(null, !origin || (o.config.corsOrigins ? o.config.corsOrigins.includes(origin) : LOCALHOST_ORIGIN.test(origin))),
    exposedHeaders: ['X-Total-Count', 'Location', 'X-Request-Id'],
  });
  // Only browsers send Origin; other clients skip the CORS work.
  app.use((req, res, next) => (req.headers.origin ? corsHandler(req, res, next) : next()));

  app.get('/health', async (_req, res) => {
    const checks: Record<string, string> = {};
    await Promise.all(
      Object.entries(o.checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), 2000);
          checks[name] = 'ok';
        } catch (err) {
          checks[name] = `error: ${(err as Error).message}`;
        }
      }),
    );
    const ok = Object.values(checks).every((c) => c === 'ok');
    res.status(ok ? 200 : 503).json({
      status: ok ? 'ok' : 'degraded',
      service: o.config.service,
      version: o.config.version,
      uptime_seconds: Math.round((Date.now() - o.startedAt) / 1000),
      checks,
    });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(o.metrics.contentType).send(await renderMetrics(o.metrics, o.logger));
  });
  const doc = o.api.openApiDocument(o.title, o.config.version, o.description);
  app.get('/openapi.json', (_req, res) => {
    res.json(doc);
  });
  const docsPage = swaggerUi.setup(doc, { customSiteTitle: o.title });
  const docsGetOnly: RequestHandler = (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return next(new MethodNotAllowedError(req.method, req.originalUrl.split('?')[0]!, ['GET', 'HEAD']));
    }
    // swagger-ui-dist's own index.html shows the petstore example, not this service
    if (req.path === '/index.html') return res.redirect(301, './');
    next();
  };
  // the page at /swagger-ui/ only: another path under it is a 404, not the page again
  const docsPageOnly: RequestHandler = (req, res, next) => (req.path === '/' ? docsPage(req, res, next) : next());
  app.use('/swagger-ui', docsGetOnly, ...swaggerUi.serve, docsPageOnly);

  app.use('/api/v1', o.config.apiToken ? bearerAuth(o.config.apiToken) : loopbackHostOnly);
  app.use(express.json({ limit: o.config.bodyLimit, type: ['application/json', 'application/*+json'], verify: utf8Only }));
  app.use(express.text({ limit: o.config.bodyLimit, type: YAML_TYPES, verify: utf8Only }));
  app.use(o.api.router);
  app.use(o.api.methodNotAllowed());

  app.use((req, _res, next) => next(new NotFoundError(`route ${req.method} ${req.path}`)));
  app.use(errorHandler(o.logger, o.api, o.config.bodyLimit));
  return app;
}

/** What Node's HTTP parser refuses before any route sees the request (a URL or headers over
 *  --max-http-header-size, a Content-Length that is no number) is answered as problem+json too:
 *  Node's own answer is a bare status with no body, which names nothing. */
export function answerClientErrors(server: Server): void {
  // a proxy request (CONNECT host:port) had its socket closed with no answer at all
  server.on('connect', (_req, socket: Duplex) => {
    const body = JSON.stringify({ type: 'about:blank', title: 'Method Not Allowed', status: 405, detail: 'CONNECT is not allowed: this is no proxy' });
    socket.end(`HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    // a request before it on the connection may be answering already: nothing can follow
    const answering = (socket as Duplex & { _httpMessage?: { headersSent: boolean } })._httpMessage?.headersSent;
    if (err.code === 'ECONNRESET' || !socket.writable || answering) return void socket.destroy();
    const [status, title, detail] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', `the request line and headers are larger than ${maxHeaderSize} bytes: shorten the path, the query or a header`]
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'the request did not arrive in time']
          : [400, 'Bad Request', `malformed HTTP request: ${(err as { reason?: string }).reason ?? err.message}`];
    const body = JSON.stringify({ type: 'about:blank', title, status, detail });
    socket.end(
      `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}

interface BodyParserError {
  type?: string;
  status?: number;
  message?: string;
  /** The raw text, when it could not be parsed. */
  body?: unknown;
}

function isJson(text: unknown): boolean {
  if (typeof text !== 'string') return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const PG_CLIENT_ERRORS: Record<string, [number, string]> = {
  '23505': [409, 'a resource with these values already exists'],
  '23503': [409, 'the resource is referenced by, or refers to, another one'],
  '22P02': [400, 'a value has the wrong format'],
  '22003': [400, 'a number is out of range'],
  '22001': [400, 'a value is too long'],
};

/** PostgreSQL cannot be reached or is going away: SQLSTATE class 08, shutdowns, no connection slot. */
const PG_UNAVAILABLE = /^(08|57P0[123]$|53300$)/;
const NET_UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);
const POOL_UNAVAILABLE = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

/** NATS client errors (by name) when the server is unreachable or does not answer. */
const BUS_UNAVAILABLE = new Set(['ClosedConnectionError', 'DrainingConnectionError', 'ConnectionError', 'RequestError', 'NoResponders']);

/** Why the request could not be served for now, when a dependency is down; null otherwise. */
function unavailable(e: { code?: string; message?: string; name?: string }): string | null {
  if (typeof e.code === 'string' && NET_UNAVAILABLE.has(e.code)) return `a service this request needs is unavailable (${e.code}); try again`;
  if (typeof e.name === 'string' && BUS_UNAVAILABLE.has(e.name)) return `the message bus is unavailable (${e.message ?? e.name}); try again`;
  if (e.name === 'TimeoutError') return 'a service this request needs did not answer in time; try again';
  if ((typeof e.code === 'string' && PG_UNAVAILABLE.test(e.code)) || (typeof e.message === 'string' && POOL_UNAVAILABLE.test(e.message))) {
    return 'the database is unavailable; try again';
  }
  return null;
}

function toHttpError(err: unknown, req: Request, api: Api, bodyLimit: string): HttpError | null {
  if (err instanceof HttpError) return err;
  const e = err as BodyParserError & { code?: string };
  // Express's decoding of a path parameter ('Failed to decode param …') names its value only
  if (err instanceof URIError && e.status === 400) {
    const name = api.undecodableParam(req.path) ?? 'path';
    return new BadRequestError(`invalid path parameter: ${name}`, [{ path: name, message: 'is not valid percent-encoded UTF-8' }]);
  }
  // zlib's own words ('incorrect header check', brotli's 'Decompression failed') named neither the body nor its encoding
  if (typeof e?.code === 'string' && /^(Z_|ERR__ERROR_)/.test(e.code) && e.status === 400) {
    const message = `is not valid ${req.headers['content-encoding'] ?? 'compressed'} data (${e.message})`;
    return new BadRequestError(`the request body ${message}`, [{ path: 'body', message }]);
  }
  switch (e?.type) {
    case 'entity.parse.failed':
      // body-parser's strict mode refuses valid JSON that is not an object or array (null, 5, "x")
      if (isJson(e.body)) return new BadRequestError('the request body must be a JSON object', [{ path: 'body', message: 'must be a JSON object' }]);
      return new HttpError(400, 'Bad Request', `malformed JSON body: ${e.message}`, [{ path: 'body', message: 'malformed JSON' }]);
    case 'entity.too.large': {
      const message = `is larger than ${bodyLimit} (HODEI_BODY_LIMIT)`;
      return new PayloadTooLargeError(`the request body ${message}`, [{ path: 'body', message }]);
    }
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new HttpError(415, 'Unsupported Media Type', e.message);
    case 'request.aborted':
      return new HttpError(400, 'Bad Request', 'the request was aborted');
  }
  const pg = e?.code ? PG_CLIENT_ERRORS[e.code] : undefined;
  if (pg) return new HttpError(pg[0], pg[0] === 409 ? 'Conflict' : 'Bad Request', pg[1]);
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new HttpError(e.status, 'Bad Request', e.message);
  const down = e ? unavailable(e) : null;
  return down ? new ServiceUnavailableError(down) : null;
}

function errorHandler(logger: Logger, api: Api, bodyLimit: string): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = toHttpError(err, req, api, bodyLimit);
    const problem = known ?? new HttpError(500, 'Internal Server Error', 'an unexpected error occurred; it has been logged');
    if (problem.status >= 500) {
      const where = { path: req.path, req_id: res.getHeader('X-Request-Id') };
      // a known failure (a database, NATS or another service away) says it all: a stack only for the unexpected
      if (known) logger.error({ ...where, status: problem.status, detail: problem.message }, 'request failed');
      else logger.error({ ...where, err }, 'request failed');
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    // a dependency away (PostgreSQL, NATS, another service): a client may try again, a second later
    if (problem.status === 503) res.setHeader('Retry-After', '1');
    res
      .status(problem.status)
      .type('application/problem+json')
      .json({
        type: 'about:blank',
        title: problem.title,
        status: problem.status,
        detail: problem.message,
        instance: requestInstance(req.originalUrl),
        ...(problem.errors ? { errors: problem.errors } : {}),
      });
  };
}
