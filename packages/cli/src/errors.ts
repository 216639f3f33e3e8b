// Errors the CLI reports as one line (plus field errors) and an exit code, never a stack trace.
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    readonly details: string[] = [],
  ) {
    super(message);
  }
}

export const USAGE_EXIT = 2;

/** The command line itself is wrong (a flag's value or a combination of flags), found before anything
 *  was sent: exit code 2, as commander's own usage errors and as shells and coreutils do. */
export class UsageError extends CliError {
  constructor(message: string, details: string[] = []) {
    super(message, USAGE_EXIT, details);
  }
}

/** The service did not answer at all: exit code 2 so scripts can tell "down" from "refused". */
export class UnreachableError extends CliError {
  constructor(
    service: string,
    url: string,
    readonly reason: string,
  ) {
    super(`cannot reach the ${service} at ${url} (${reason})`, 2);
  }
}

/** The service took the request, then closed the connection before the end of its answer. */
export class CutOffError extends UnreachableError {
  constructor(service: string, url: string, route: string, reason: string) {
    super(service, url, reason);
    this.message = `the ${service} at ${url} closed the connection before the end of its answer to ${route} (${reason})`;
  }
}

/** The service answered with a problem (4xx/5xx). */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    message: string,
    readonly fieldErrors: { path: string; message: string }[] = [],
    /** A 503's Retry-After, in ms: the service did nothing and asks to be tried again after it. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message, status >= 500 ? 2 : 1, fieldErrors.map((e) => `${e.path || '(body)'}: ${e.message}`));
  }
}
