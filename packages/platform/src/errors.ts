// Typed errors: routes and stores throw these, the one error middleware turns them into
// application/problem+json with the matching status.
export interface FieldError {
  path: string;
  message: string;
}

/** Longest key or value an error message repeats whole. */
const CLIP_CHARS = 64;
/** Most keys of a field path an error names: bodies nest deeper only to probe. */
const PATH_KEYS = 16;

/** A key or value as an error names it: a long one (an env name of 5,000 characters) cut to its
 *  start and its length, so a problem never repeats a huge input in its detail and each error. */
export function clip(text: string): string {
  return text.length <= CLIP_CHARS ? text : `${text.slice(0, CLIP_CHARS)}…(${text.length} characters)`;
}

/** A field path as an error names it (`env.NAME`, `jobs.0.depends_on`): each key clipped, and a
 *  path deeper than PATH_KEYS cut after its first keys. */
export function fieldPath(keys: readonly PropertyKey[]): string {
  const shown = keys.slice(0, PATH_KEYS).map((k) => clip(String(k))).join('.');
  return keys.length > PATH_KEYS ? `${shown}…(${keys.length} keys deep)` : shown;
}

/** The request a problem names in `instance`: its path whole, a long query clipped like any value
 *  (a 3,000-character parameter is not repeated back). */
export function requestInstance(url: string): string {
  const at = url.indexOf('?');
  return at < 0 ? url : `${url.slice(0, at)}?${clip(url.slice(at + 1))}`;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    detail?: string,
    readonly errors?: FieldError[],
  ) {
    super(detail ?? title);
  }
}

export class BadRequestError extends HttpError {
  constructor(detail: string, errors?: FieldError[]) {
    super(400, 'Bad Request', detail, errors);
  }
}
export class UnauthorizedError extends HttpError {
  constructor(detail = 'missing or invalid bearer token') {
    super(401, 'Unauthorized', detail);
  }
}
export class NotFoundError extends HttpError {
  /** `field`: the body field that names the missing resource (a job_id), named in `errors`. */
  constructor(what: string, id?: string, field?: string) {
    const detail = id === undefined ? `${what} not found` : `${what} ${id} not found`;
    super(404, 'Not Found', detail, field ? [{ path: field, message: detail }] : undefined);
  }
}
export class MethodNotAllowedError extends HttpError {
  constructor(method: string, path: string, readonly allow: string[]) {
    super(405, 'Method Not Allowed', `${method} is not allowed on ${path}; allowed: ${allow.join(', ')}`);
  }
}
export class ConflictError extends HttpError {
  constructor(detail: string, errors?: FieldError[]) {
    super(409, 'Conflict', detail, errors);
  }
}
export class PayloadTooLargeError extends HttpError {
  constructor(detail: string, errors?: FieldError[]) {
    super(413, 'Payload Too Large', detail, errors);
  }
}
export class UnsupportedMediaTypeError extends HttpError {
  constructor(detail: string) {
    super(415, 'Unsupported Media Type', detail);
  }
}
export class ServiceUnavailableError extends HttpError {
  constructor(detail: string) {
    super(503, 'Service Unavailable', detail);
  }
}
/** A dependency (another service) answered badly: the caller's request was fine. */
export class BadGatewayError extends HttpError {
  constructor(detail: string) {
    super(502, 'Bad Gateway', detail);
  }
}
