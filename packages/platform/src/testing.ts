// Isolation for tests: a database and a NATS prefix of their own per test file, dropped after.
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { loadConfig, type Config, type ServiceName } from './config.js';
import { createPool, dropDatabase, type Pool } from './db.js';
import { createLogger } from './logger.js';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { subjects } from '@hodei/types';

export interface TestEnv {
  databaseUrl: string;
  natsPrefix: string;
  /** Config for one service of this test's installation (port 0: any free port). */
  config: (service: ServiceName, overrides?: Partial<Config>) => Config;
  /** Runs `during` while this test's database refuses connections (its sessions ended): an outage. */
  databaseDown: (during: () => Promise<void>) => Promise<void>;
  cleanup: () => Promise<void>;
}

export function createTestEnv(): TestEnv {
  const id = randomBytes(5).toString('hex');
  const base = new URL(process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  base.pathname = `/hodei_test_${id}`;
  const databaseUrl = base.toString();
  const natsPrefix = `t${id}`;
  return {
    databaseUrl,
    natsPrefix,
    config: (service, overrides = {}) => ({
      ...loadConfig(service, {
        DATABASE_URL: databaseUrl,
        NATS_URL: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
        HODEI_NATS_PREFIX: natsPrefix,
        LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      }),
      port: 0,
      ...overrides,
    }),
    databaseDown: async (during) => {
      const admin = new URL(databaseUrl);
      admin.pathname = '/postgres';
      const pool = createPool(admin.toString(), 'public', createLogger('test', 'silent'), 1);
      const db = base.pathname.slice(1);
      try {
        await pool.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS false`);
        await pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [db]);
        await during();
      } finally {
        await pool.query(`ALTER DATABASE ${db} ALLOW_CONNECTIONS true`);
        await pool.end();
      }
    },
    cleanup: async () => {
      await dropDatabase(databaseUrl);
      const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' });
      const jsm = await jetstreamManager(nc);
      const s = subjects(natsPrefix);
      for (const name of [s.eventsStream, s.logsStream]) await jsm.streams.delete(name).catch(() => undefined);
      await nc.close();
    },
  };
}

/** No process has this pid (a zombie still counts as one). */
export function pidGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for services that must know their peers' URLs before they start). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/** `n` distinct free ports: all held open at once, then released. One at a time, the kernel can
 *  hand the same port out twice (two services of one installation then fought over it). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const srv = createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((srv) => (srv.address() as AddressInfo).port);
  await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(resolve))));
  return ports;
}

export interface TcpForwarder {
  /** Cuts what passes through and stops listening. */
  close: () => Promise<void>;
  /** Holds back what either side sends, the connections kept open (a network gone silent), or with
   *  `'replies'` only what the server sends (what the client sends arrives: a late answer)… */
  hold: (what?: 'both' | 'replies') => void;
  /** …and delivers it now. */
  release: () => void;
}

/** Listens on `port` from now on, passing every connection through to `target` (a PostgreSQL or
 *  NATS that comes up later, or goes away or falls silent for one client only). */
export function forwardTcp(port: number, target: URL): Promise<TcpForwarder> {
  const sockets = new Set<Socket>();
  let held: (() => void)[] | null = null;
  let heldBoth = true;
  const relay = (from: Socket, to: Socket, reply: boolean) =>
    from.on('data', (chunk) => (held && (reply || heldBoth) ? held.push(() => to.write(chunk)) : to.write(chunk))).on('end', () => to.end());
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined).on('close', () => sockets.delete(s));
    }
    relay(client, upstream, false);
    relay(upstream, client, true);
  });
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () =>
      resolve({
        close: () => {
          for (const s of sockets) s.destroy();
          return new Promise((r) => server.close(() => r()));
        },
        hold: (what = 'both') => {
          heldBoth = what === 'both';
          held ??= [];
        },
        release: () => {
          const writes = held ?? [];
          held = null;
          for (const write of writes) write();
        },
      }),
    ),
  );
}

/** Ports for the three services of one test installation, and the URLs they call each other at:
 *  the services call each other, so every URL must be known before the first one starts. */
export async function serviceAddresses(): Promise<{ ports: Record<ServiceName, number>; urls: Record<ServiceName, string> }> {
  const [orchestrator, scheduler, workerManager] = (await freePorts(3)) as [number, number, number];
  const ports = { orchestrator, scheduler, 'worker-manager': workerManager };
  const url = (svc: ServiceName) => `http://127.0.0.1:${ports[svc]}`;
  return { ports, urls: { orchestrator: url('orchestrator'), scheduler: url('scheduler'), 'worker-manager': url('worker-manager') } };
}

/** Resolves once the scheduler's registry lists the worker `online`: ready for placement. */
export async function workerOnline(schedulerUrl: string, workerId: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${schedulerUrl}/api/v1/workers/${workerId}`).catch(() => undefined);
    const body = res?.ok ? ((await res.json()) as { status?: string }) : undefined;
    if (body?.status === 'online') return;
    if (Date.now() > deadline) throw new Error(`worker ${workerId} did not come online in the scheduler within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One event of a text/event-stream (the text between two blank lines), for test and bench
 *  clients; null when the block holds only comments. */
export function parseSseBlock(block: string): { id?: string; event: string; data: string } | null {
  const e: { id?: string; event: string; data: string } = { event: 'message', data: '' };
  let any = false;
  for (const line of block.split('\n')) {
    if (line.startsWith(':') || line === '') continue;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
    any = true;
    if (field === 'id') e.id = value;
    else if (field === 'event') e.event = value;
    else if (field === 'data') e.data = e.data ? `${e.data}\n${value}` : value;
  }
  return any ? e : null;
}

/**
 * The statements with a LIMIT that `run` sends through `db` (a list route's pages, read-only: each is
 * run again under EXPLAIN ANALYZE), each with the plan nodes PostgreSQL runs it with (`Sort`,
 * `Index Scan on jobs`…) and how many times each table was scanned: a page whose ORDER BY no index
 * serves shows a Sort over every row; a lookup made for the rows an offset skips, as many loops.
 */
export async function pagedPlans(db: Pool, run: () => Promise<unknown>): Promise<{ sql: string; nodes: string[]; loops: Record<string, number> }[]> {
  const seen: { text: string; values: unknown[] }[] = [];
  const query = db.query;
  db.query = ((config: string | { text: string; values?: unknown[] }, values?: unknown[]) => {
    const text = typeof config === 'string' ? config : config.text;
    if (/\bLIMIT\b/.test(text)) seen.push({ text, values: (typeof config === 'string' ? values : config.values) ?? [] });
    return (query as (...args: unknown[]) => unknown).call(db, config, values);
  }) as typeof db.query;
  try {
    await run();
  } finally {
    db.query = query;
  }
  const plans: { sql: string; nodes: string[]; loops: Record<string, number> }[] = [];
  for (const { text, values } of seen) {
    const { rows } = await db.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values);
    const nodes: string[] = [];
    const loops: Record<string, number> = {};
    const walk = (n: PlanNode) => {
      const table = n['Relation Name'];
      nodes.push(table ? `${n['Node Type']} on ${table}` : n['Node Type']);
      if (table) loops[table] = Math.max(loops[table] ?? 0, n['Actual Loops']);
      for (const child of n.Plans ?? []) walk(child);
    };
    walk(rows[0]!['QUERY PLAN'][0].Plan);
    plans.push({ sql: text, nodes, loops });
  }
  return plans;
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Loops': number;
  Plans?: PlanNode[];
}
