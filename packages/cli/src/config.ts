// The one place the CLI reads its environment: where the services are, the token, colours.
export const SERVICES = ['orchestrator', 'scheduler', 'worker-manager'] as const;
export type ServiceName = (typeof SERVICES)[number];

export const DEFAULT_PORTS: Record<ServiceName, number> = { orchestrator: 8080, scheduler: 8081, 'worker-manager': 8082 };

/** Options every command accepts (declared once on the program). */
export interface GlobalFlags {
  url?: string;
  orchestratorUrl?: string;
  schedulerUrl?: string;
  workerManagerUrl?: string;
  token?: string;
  json?: boolean;
  color?: boolean;
}

export interface CliConfig {
  urls: Record<ServiceName, string>;
  token: string | undefined;
  json: boolean;
  /** Colour each output stream: only on a terminal, never with NO_COLOR, FORCE_COLOR=0 or --no-color. */
  color: { stdout: boolean; stderr: boolean };
  /** Each stream is a terminal that can be drawn on (not TERM=dumb). */
  tty: { stdout: boolean; stderr: boolean };
  /** The environment `hodei worker` hands to the agent (NATS url, prefix…). */
  env: Readonly<Record<string, string | undefined>>;
}

/** `usage`: a flag's value is at fault (a usage error, exit 2), not the environment's. */
export class ConfigError extends Error {
  constructor(
    message: string,
    readonly usage = false,
  ) {
    super(message);
  }
}

/** What an Authorization header can carry, as the services' ApiToken (@hodei/types, not loaded here for --help's sake). */
const HEADER_TOKEN = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/;
const TOKEN_RULE = 'must be printable ASCII, with no space at either end and no newline or other control character (a line ending read from a file?)';

function withScheme(raw: string, what: string): URL {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http');
    return url;
  } catch {
    throw new ConfigError(`${what}: "${raw}" is not an http(s) URL`, what.startsWith('--'));
  }
}

const trimSlash = (u: string) => u.replace(/\/+$/, '');

/**
 * Where each service is. Precedence: --<service>-url, HODEI_<SERVICE>_URL, then --url / HODEI_URL
 * (one host: the default port of each service, or, when it names a port, that one address for all),
 * then 127.0.0.1 with the default ports.
 */
export function resolveUrls(flags: GlobalFlags, env: Record<string, string | undefined>): Record<ServiceName, string> {
  const hostFlag = flags.url ?? env.HODEI_URL;
  const host = hostFlag ? withScheme(hostFlag, flags.url ? '--url' : 'HODEI_URL') : undefined;
  const fromHost = (s: ServiceName): string => {
    if (!host) return `http://127.0.0.1:${DEFAULT_PORTS[s]}`;
    if (host.port) return trimSlash(host.toString());
    const u = new URL(host.toString());
    u.port = String(DEFAULT_PORTS[s]);
    return trimSlash(u.toString());
  };
  const one = (s: ServiceName, flag: string | undefined, envName: string, flagName: string): string => {
    const raw = flag ?? env[envName];
    if (raw) return trimSlash(withScheme(raw, flag ? flagName : envName).toString());
    return fromHost(s);
  };
  return {
    orchestrator: one('orchestrator', flags.orchestratorUrl, 'HODEI_ORCHESTRATOR_URL', '--orchestrator-url'),
    scheduler: one('scheduler', flags.schedulerUrl, 'HODEI_SCHEDULER_URL', '--scheduler-url'),
    'worker-manager': one('worker-manager', flags.workerManagerUrl, 'HODEI_WORKER_MANAGER_URL', '--worker-manager-url'),
  };
}

export function loadCliConfig(
  flags: GlobalFlags,
  env: Record<string, string | undefined> = process.env,
  streams: { stdout: { isTTY?: boolean }; stderr: { isTTY?: boolean } } = process,
): CliConfig {
  // a terminal that takes no escape sequences (TERM=dumb: Emacs' shell, some CI consoles) gets neither colours nor a redrawn bar
  const drawable = env.TERM !== 'dumb';
  const tty = { stdout: drawable && streams.stdout.isTTY === true, stderr: drawable && streams.stderr.isTTY === true };
  // FORCE_COLOR=0 turns colours off, as Node and most tools read it
  const noColor = flags.color === false || (env.NO_COLOR !== undefined && env.NO_COLOR !== '') || env.FORCE_COLOR === '0';
  const force = !noColor && env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0';
  const token = flags.token ?? (env.HODEI_API_TOKEN || undefined);
  // quoted by fetch's error, the token went to the terminal as 'cannot reach' the service
  if (token !== undefined && !HEADER_TOKEN.test(token)) {
    throw new ConfigError(`${flags.token === undefined ? 'HODEI_API_TOKEN' : '--token'}: ${TOKEN_RULE}`, flags.token !== undefined);
  }
  return {
    urls: resolveUrls(flags, env),
    token,
    json: flags.json === true,
    color: { stdout: force || (!noColor && tty.stdout), stderr: force || (!noColor && tty.stderr) },
    tty,
    env,
  };
}
