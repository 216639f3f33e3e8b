// One declaration per route: the zod schemas validate the request, type the handler and describe
// the route in the service's OpenAPI document.
import { OpenApiGeneratorV3, OpenAPIRegistry, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { Health, ProblemDetails, z } from '@hodei/types';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import express from 'express';
import { Composer, LineCounter, Parser } from 'yaml';
import { BadRequestError, clip, fieldPath, MethodNotAllowedError, UnsupportedMediaTypeError, type FieldError } from '../errors.js';
import { stringPath, unstorableCharacter } from '../db.js';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type Schema = z.ZodType;
type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface RouteDef<P extends Schema | undefined, Q extends Schema | undefined, B extends Schema | undefined> {
  method: Method;
  /** Express-style path, e.g. `/api/v1/jobs/:id`. */
  path: string;
  summary: string;
  tag: string;
  params?: P;
  query?: Q;
  body?: B;
  /** Request headers the handler reads itself (and names when bad), for the document only. */
  headers?: z.ZodObject;
  /** The body may also come as YAML (`application/yaml`, `application/x-yaml`). */
  yaml?: boolean;
  /**
   * `alternatives`: the same response in other content types, chosen by the request's Accept.
   * `location`: the answer carries the resource's `Location` (a 201 always does; a 202 of work started may).
   */
  responses: Record<number, { description: string; schema?: Schema; contentType?: string; alternatives?: Record<string, Schema>; location?: boolean }>;
}

export interface RouteInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
}

export type RouteHandler<P, Q, B> = (input: RouteInput<P, Q, B>, req: Request, res: Response) => Promise<void> | void;

const JSON_TYPES = ['application/json', 'application/*+json'];
export const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];

/** Why a record's key (an env name, a label) was refused; zod itself says only 'Invalid key in record'. */
function keyMessage(issues: readonly { message: string }[]): string {
  return `invalid name: ${issues.map((k) => k.message).join('; ')}`;
}

type Issue = z.ZodError['issues'][number];

/** A number past 2^53 fails int()'s safe range (±9007199254740991) as well as its field's own
 *  bound: of the bounds of one kind a field fails, only the tightest is said. */
function tightestBounds(issues: readonly Issue[]): Issue[] {
  const bound = (i: Issue) => (i.code === 'too_big' ? Number(i.maximum) : i.code === 'too_small' ? -Number(i.minimum) : undefined);
  const tightest = new Map<string, Issue>();
  for (const i of issues) {
    const b = bound(i);
    if (b === undefined) continue;
    const key = `${i.code} ${JSON.stringify(i.path)}`;
    const kept = tightest.get(key);
    if (!kept || b < bound(kept)!) tightest.set(key, i);
  }
  return issues.filter((i) => bound(i) === undefined || tightest.get(`${i.code} ${JSON.stringify(i.path)}`) === i);
}

export function zodIssuesToFields(error: z.ZodError, unknown = (key: string) => `unknown field "${key}"`): FieldError[] {
  return tightestBounds(error.issues).flatMap((i) =>
    // a field the schema does not know is named itself, not the object holding it
    i.code === 'unrecognized_keys'
      ? i.keys.map((k) => ({ path: fieldPath([...i.path, k]), message: unknown(clip(k)) }))
      : [{ path: fieldPath(i.path) || 'body', message: i.code === 'invalid_key' ? keyMessage(i.issues) : i.message }],
  );
}

/** The query of a route: a parameter it does not declare (`?stauts=failed`) is a 400 naming it,
 *  not a filter silently ignored. */
function strictQuery(schema: Schema | undefined): { schema: Schema; unknown: (key: string) => string } {
  // a z.object, as the OpenAPI registry requires of a query
  const object = (schema ?? z.object({})) as z.ZodObject;
  const names = Object.keys(object.shape);
  const takes = names.length ? `this route takes ${names.join(', ')}` : 'this route takes no query parameters';
  return { schema: object.strict(), unknown: (k) => `unknown parameter "${k}": ${takes}` };
}

/** A query parameter given more than once (`?status=failed&status=lost`) arrives as an array, which
 *  no query schema takes: said as such, not as a wrong type or value of the parameter. */
function repeatedParams(query: unknown): Map<string, string> {
  const repeated = new Map<string, string>();
  for (const [key, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (Array.isArray(value)) repeated.set(key, `is given ${value.length} times: give it once`);
  }
  return repeated;
}

function parseOrThrow<S extends Schema>(
  schema: S,
  value: unknown,
  where: 'path' | 'query' | 'body',
  unknown?: (key: string) => string,
): z.output<S> {
  let what: string | undefined;
  const at = stringPath(value, (s) => (what = unstorableCharacter(s)) !== undefined);
  if (at !== undefined && what) {
    const field = at || 'body';
    throw new BadRequestError(`invalid ${where === 'path' ? 'path parameter' : where}: ${field}`, [{ path: field, message: `must not contain ${what}` }]);
  }
  const result = schema.safeParse(value);
  if (result.success) {
    // JSON.parse and YAML keep a "__proto__" key, which zod skips in a record (a strict object names
    // it unknown): env or labels were taken without it and its value
    const dropped = where === 'body' ? stringPath(value, () => false, (k) => k === '__proto__') : undefined;
    if (dropped !== undefined) throw new BadRequestError(`invalid body: ${dropped}`, [{ path: dropped, message: 'invalid name: __proto__ cannot be a name here (it would be dropped)' }]);
    return result.data;
  }
  let errors = zodIssuesToFields(result.error, unknown);
  if (where === 'query') {
    const repeated = repeatedParams(value);
    const seen = new Set<string>();
    // one error per repeated parameter; one the route does not take keeps its 'unknown parameter'
    errors = errors.flatMap((e) => {
      const message = repeated.get(e.path);
      if (!message || e.message.startsWith('unknown parameter')) return [e];
      if (seen.has(e.path)) return [];
      seen.add(e.path);
      return [{ path: e.path, message }];
    });
  }
  const names = [...new Set(errors.map((e) => e.path))].join(', ');
  throw new BadRequestError(`invalid ${where === 'path' ? 'path parameter' : where}: ${names}`, errors);
}

/** Deeper than any Hodei body goes (a pipeline's jobs' env is 4 levels), and far from the stack's end. */
export const MAX_YAML_DEPTH = 64;

type CstToken = { type?: string; value?: CstToken; items?: Array<{ key?: CstToken | null; value?: CstToken | null }> };

/**
 * How deep the collections of YAML documents nest, from their CST: the lexer and parser go without
 * recursion, but the composer recurses once per level, and a stack overflow there can land in V8
 * compiling a regular expression, which aborts the process (a 20 KB body of `[` took a service down).
 */
function yamlDepth(docs: readonly CstToken[], max: number): number {
  let deepest = 0;
  const stack: Array<[CstToken, number]> = docs.map((doc) => [doc, 0]);
  for (let next = stack.pop(); next; next = stack.pop()) {
    const [token, above] = next;
    const depth = token.items ? above + 1 : above;
    if (depth > deepest && (deepest = depth) > max) break;
    if (token.value) stack.push([token.value, depth]);
    for (const item of token.items ?? []) {
      if (item.key) stack.push([item.key, depth]);
      if (item.value) stack.push([item.value, depth]);
    }
  }
  return deepest;
}

/** Parses a YAML text body (read once: the CST is checked, then composed); a syntax error becomes a 400 that gives line and column. */
export function parseYamlBody(text: string): unknown {
  const lines = new LineCounter();
  const tokens = [...new Parser(lines.addNewLine).parse(text)];
  if (yamlDepth(tokens as CstToken[], MAX_YAML_DEPTH) > MAX_YAML_DEPTH) {
    const message = `nests collections deeper than ${MAX_YAML_DEPTH} levels`;
    throw new BadRequestError(`the YAML body ${message}`, [{ path: 'body', message }]);
  }
  const [doc, second] = new Composer().compose(tokens, true, text.length);
  const yamlError = (offset: number, message: string) => {
    const pos = lines.linePos(offset);
    const where = `line ${pos.line}, column ${pos.col}`;
    return new BadRequestError(`YAML error at ${where}: ${message}`, [{ path: 'body', message: `${where}: ${message}` }]);
  };
  if (second) throw yamlError(second.range[0], 'a second YAML document starts here (---): send one document');
  const err = doc!.errors[0];
  if (err) throw yamlError(err.pos[0], err.message.split('\n')[0] ?? '');
  try {
    const value: unknown = doc!.toJS({ maxAliasCount: 100 });
    JSON.stringify(value); // throws on an alias that contains itself
    return value;
  } catch (e) {
    // an alias inside itself (`a: &a [*a]`) or aliases that multiply (a "billion laughs" document)
    const why = /circular/i.test((e as Error).message) ? 'an alias refers to a node that contains it' : (e as Error).message.split('\n')[0];
    const message = `YAML aliases cannot be expanded: ${why}`;
    throw new BadRequestError(message, [{ path: 'body', message }]);
  }
}

function decodes(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}

/** The query parameter of `url` (`query` when it is its name) that is not valid percent-encoded
 *  UTF-8: Node's parser reads it as U+FFFD, a filter on text other than what was sent. */
function undecodableQueryParam(url: string): string | undefined {
  const at = url.indexOf('?');
  if (at < 0) return undefined;
  for (const pair of url.slice(at + 1).split('&')) {
    const [key = '', value = ''] = pair.replace(/\+/g, ' ').split(/=(.*)/s);
    if (!decodes(key)) return 'query';
    if (!decodes(value)) return clip(decodeURIComponent(key));
  }
  return undefined;
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

export class Api {
  readonly registry = new OpenAPIRegistry();
  readonly router: Router = express.Router();
  /** The methods of each path, for the 405 of a method the path lacks. */
  private readonly methods = new Map<string, Set<Method>>([
    ['/health', new Set(['get'])],
    ['/metrics', new Set(['get'])],
    ['/openapi.json', new Set(['get'])],
  ]);

  constructor() {
    this.registry.register('Problem', ProblemDetails);
    this.registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
    // served by app.ts for every service, outside /api/v1 and without a token
    const health = { 'application/json': { schema: Health } };
    this.registry.registerPath({
      method: 'get',
      path: '/health',
      summary: 'health of the service and of its PostgreSQL and NATS connections',
      tags: ['operations'],
      responses: {
        200: { description: 'every check is ok', content: health },
        503: { description: 'a check failed; its entry in checks says why', content: health },
      },
    });
    this.registry.registerPath({
      method: 'get',
      path: '/metrics',
      summary: 'Prometheus metrics',
      tags: ['operations'],
      responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': { schema: z.string() } } } },
    });
  }

  route<P extends Schema | undefined = undefined, Q extends Schema | undefined = undefined, B extends Schema | undefined = undefined>(
    def: RouteDef<P, Q, B>,
    handler: RouteHandler<Out<P>, Out<Q>, Out<B>>,
  ): void {
    this.document(def);
    this.methods.set(def.path, (this.methods.get(def.path) ?? new Set<Method>()).add(def.method));
    const query = strictQuery(def.query);
    const run: RequestHandler = async (req: Request, res: Response, next: NextFunction) => {
      try {
        const params = def.params ? parseOrThrow(def.params, req.params, 'path') : undefined;
        const undecodable = undecodableQueryParam(req.originalUrl);
        if (undecodable) throw new BadRequestError(`invalid query: ${undecodable}`, [{ path: undecodable, message: 'is not valid percent-encoded UTF-8' }]);
        const parsedQuery = parseOrThrow(query.schema, req.query, 'query', query.unknown);
        let body: unknown;
        if (def.body) {
          // no body (an empty one too, which the text parser gives as '') is {}
          let raw: unknown;
          if (hasBody(req)) {
            if (req.is(YAML_TYPES)) {
              if (!def.yaml) throw new UnsupportedMediaTypeError('this route takes application/json');
              raw = parseYamlBody(String(req.body ?? ''));
              // comments only, or ~: refused as JSON's null is, not taken for {}
              if (raw === null || raw === undefined) {
                throw new BadRequestError('the request body holds no YAML document', [{ path: 'body', message: 'holds no YAML document: give a mapping' }]);
              }
            } else if (!req.is(JSON_TYPES)) {
              throw new UnsupportedMediaTypeError(
                `Content-Type must be application/json${def.yaml ? ' or application/yaml' : ''}`,
              );
            } else {
              raw = req.body;
            }
          }
          body = parseOrThrow(def.body, raw ?? {}, 'body');
        }
        await handler({ params, query: def.query ? parsedQuery : undefined, body } as RouteInput<Out<P>, Out<Q>, Out<B>>, req, res);
      } catch (err) {
        next(err);
      }
    };
    this.router[def.method](def.path, run);
  }

  /** The route pattern `path` falls under (a literal segment before a parameter one): what a request
   *  refused before its route handler (a body that is no JSON, a missing token) was sent to. */
  patternOf(path: string): string | undefined {
    const segments = path.replace(/(.)\/$/, '$1').split('/');
    let best: string | undefined;
    let literals = -1;
    for (const template of this.methods.keys()) {
      const parts = template.split('/');
      if (parts.length !== segments.length || !parts.every((p, i) => (p.startsWith(':') ? segments[i] !== '' : p === segments[i]))) continue;
      const n = parts.filter((p) => !p.startsWith(':')).length;
      if (n > literals) [best, literals] = [template, n];
    }
    return best;
  }

  /** The parameter of a route `path` would take whose segment is not valid percent-encoded UTF-8. */
  undecodableParam(path: string): string | undefined {
    const segments = path.replace(/(.)\/$/, '$1').split('/');
    for (const template of this.methods.keys()) {
      const parts = template.split('/');
      if (parts.length !== segments.length || !parts.every((p, i) => p.startsWith(':') || p === segments[i])) continue;
      const at = parts.findIndex((p, i) => p.startsWith(':') && !decodes(segments[i]!));
      if (at >= 0) return parts[at]!.slice(1);
    }
    return undefined;
  }

  /**
   * For use after every route: a request to a path that exists, with a method none of its routes
   * takes, is a 405 whose `Allow` lists the methods of the path (of every route pattern it matches).
   */
  methodNotAllowed(): Router {
    const router = express.Router();
    const allowed = (res: Response): Set<string> => (res.locals.allow ??= new Set<string>()) as Set<string>;
    for (const [path, methods] of this.methods) {
      router.all(path, (_req, res, next) => {
        for (const m of methods) allowed(res).add(m.toUpperCase());
        if (methods.has('get')) allowed(res).add('HEAD');
        next();
      });
    }
    router.use((req, res, next) => {
      const allow = [...allowed(res)].sort();
      if (!allow.length) return next();
      res.setHeader('Allow', allow.join(', '));
      // as Express answers OPTIONS on the /api/v1 paths
      if (req.method === 'OPTIONS') return void res.type('text/plain').send(allow.join(', '));
      next(new MethodNotAllowedError(req.method, req.path, allow));
    });
    return router;
  }

  private document(def: RouteDef<Schema | undefined, Schema | undefined, Schema | undefined>): void {
    const responses: RouteConfig['responses'] = {};
    for (const [status, r] of Object.entries(def.responses)) {
      // every error is answered by the one error middleware, as problem+json
      const schema = r.schema ?? (Number(status) >= 400 ? ProblemDetails : undefined);
      const contentType = r.contentType ?? (Number(status) >= 400 ? 'application/problem+json' : 'application/json');
      const content = schema ? { [contentType]: { schema } } : undefined;
      for (const [type, alt] of Object.entries(r.alternatives ?? {})) if (content) content[type] = { schema: alt };
      responses[status] = { description: r.description, content, headers: responseHeaders(Number(status), r.schema, r.location) };
    }
    const defaults: Array<[number, string]> = [
      [400, 'invalid request'],
      [401, 'missing or invalid token'],
      [403, 'without HODEI_API_TOKEN, a request whose Host is not 127.0.0.1 or localhost'],
      [503, 'PostgreSQL or NATS is unavailable; the request can be tried again'],
    ];
    if (def.body) {
      defaults.push(
        [413, 'the body is larger than the limit (HODEI_BODY_LIMIT)'],
        [415, `the Content-Type is not application/json${def.yaml ? ' or application/yaml' : ''}`],
      );
    }
    for (const [status, description] of defaults) {
      responses[status] ??= { description, content: { 'application/problem+json': { schema: ProblemDetails } } };
    }
    const bodyContent: Record<string, { schema: Schema }> = {};
    if (def.body) {
      bodyContent['application/json'] = { schema: def.body };
      if (def.yaml) bodyContent['application/yaml'] = { schema: def.body };
    }
    this.registry.registerPath({
      method: def.method,
      path: def.path.replace(/:([A-Za-z_]+)/g, '{$1}'),
      summary: def.summary,
      tags: [def.tag],
      security: def.path.startsWith('/api/') ? [{ bearer: [] }] : [],
      request: {
        // both are z.object schemas; the registry's own type for them is narrower than ours
        params: def.params as never,
        query: def.query as never,
        headers: def.headers as never,
        // a request without a body is parsed as {}: the body is required only where {} is refused
        body: def.body ? { content: bodyContent, required: !def.body.safeParse({}).success } : undefined,
      },
      responses,
    });
  }

  openApiDocument(title: string, version: string, description: string): object {
    return new OpenApiGeneratorV3(this.registry.definitions).generateDocument({
      openapi: '3.0.3',
      info: { title, version, description },
    });
  }
}

/** The Last-Event-ID header an event stream takes, for its document (the route reads and checks it). */
export function lastEventIdHeader(description: string): z.ZodObject {
  return z.object({ 'Last-Event-ID': z.string().regex(/^\d+$/).optional().openapi({ description }) });
}

const LOCATION = z.object({ Location: z.string().openapi({ description: 'path of the resource (created, or whose work was started)' }) });
const TOTAL_COUNT = z.object({
  'X-Total-Count': z.number().int().openapi({ description: 'number of items that match, over all pages' }),
});

/** The headers sendCreated, sendList and the routes that answer with `location` set, so the document names them. */
function responseHeaders(status: number, schema: Schema | undefined, location = false): typeof LOCATION | typeof TOTAL_COUNT | undefined {
  if (status === 201 || location) return LOCATION;
  if (status === 200 && schema instanceof z.ZodArray) return TOTAL_COUNT;
  return undefined;
}

/** Sends a list the way every list endpoint does: a plain array plus `X-Total-Count`. */
export function sendList(res: Response, items: unknown[], total: number): void {
  res.setHeader('X-Total-Count', String(total));
  res.json(items);
}

/** `201 Created` with the resource and its `Location`. */
export function sendCreated(res: Response, location: string, resource: unknown): void {
  res.status(201).location(location).json(resource);
}
