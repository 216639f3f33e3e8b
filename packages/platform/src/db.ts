import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import type { Logger } from './logger.js';
import { fieldPath } from './errors.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

// BIGINT counts (COUNT(*), sums) arrive as numbers; none of ours come near 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * SQL for a set of records passed as one `jsonb[]` parameter (`records(items)`), one row each, with
 * the columns of `v`: `FROM ${fromRecords('$1', 'v_id uuid, v_status text')}`. Unlike
 * `jsonb_to_recordset`, which the planner takes for 100 rows whatever it holds, `unnest` of a
 * parameter is counted, so a join with a table finds the few rows by index instead of scanning it.
 */
export const fromRecords = (param: string, columns: string): string =>
  `unnest(${param}::jsonb[]) AS rec(j) CROSS JOIN LATERAL jsonb_to_record(rec.j) AS v(${columns})`;

/**
 * PostgreSQL's text and jsonb hold no NUL character. Text from outside (a log line, a worker's
 * message or progress) is stored with U+FFFD in its place: a statement that fails on NUL would
 * fail again on every redelivery of the event, and the execution would never move on.
 */
export const withoutNul = (text: string): string => (text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text);
/** Half of a UTF-16 surrogate pair without the other: no UTF-8 text holds one (PostgreSQL's jsonb
 *  refuses it, a text column would get U+FFFD). */
const LONE_SURROGATE = /[\ud800-\udfff]/u;
const LONE_SURROGATES = new RegExp(LONE_SURROGATE, 'gu');
/** Nor does jsonb hold half of a surrogate pair (`"\ud800"` in a worker's JSON): U+FFFD too. */
const storableText = (text: string): string => withoutNul(text).replace(LONE_SURROGATES, '\uFFFD');
const storableReplacer = (_key: string, v: unknown): unknown => (typeof v === 'string' ? storableText(v) : v);

/** What in a string PostgreSQL cannot store, if anything: a request naming it is refused, a
 *  worker's result holding it is reported, rather than failing on every retry of the insert. */
export function unstorableCharacter(s: string): string | undefined {
  if (s.includes('\u0000')) return 'a NUL character (\\u0000)';
  if (LONE_SURROGATE.test(s)) return 'a lone UTF-16 surrogate (\\ud800-\\udfff)';
  return undefined;
}

/**
 * The path (`a.b.0`) of the first string or key in a JSON value that `bad` (`badKey` for keys) is
 * true of ('' for the value itself). Without recursion: a request body may nest deeper than the call
 * stack goes.
 */
export function stringPath(value: unknown, bad: (s: string) => boolean, badKey: (k: string) => boolean = bad): string | undefined {
  interface Node {
    value: unknown;
    key: string;
    parent: Node | undefined;
  }
  const pathOf = (node: Node, last?: string): string => {
    const keys = last === undefined ? [] : [last];
    for (let at: Node | undefined = node; at?.parent; at = at.parent) keys.push(at.key);
    return fieldPath(keys.reverse());
  };
  const stack: Node[] = [{ value, key: '', parent: undefined }];
  const seen = new Set<object>(); // a value built from YAML aliases can hold itself
  for (let node = stack.pop(); node; node = stack.pop()) {
    const v = node.value;
    if (typeof v === 'string') {
      if (bad(v)) return pathOf(node);
    } else if (typeof v === 'object' && v !== null && !seen.has(v)) {
      seen.add(v);
      for (const [k, child] of Object.entries(v)) {
        if (badKey(k)) return pathOf(node, k);
        stack.push({ value: child, key: k, parent: node });
      }
    }
  }
  return undefined;
}

/** One record's JSON text, NUL characters and lone surrogates replaced (JSON writes them as
 *  `\u0000`, `\ud800`; a literal backslash before such text only costs a second pass). */
function recordText(item: object): string {
  const text = JSON.stringify(item);
  return /\\u(0000|d[89a-f])/i.test(text) ? JSON.stringify(item, storableReplacer) : text;
}

/** The parameter for `fromRecords`: one JSON text per record (NUL characters and lone surrogates replaced). */
export const records = (items: readonly object[]): string[] => items.map(recordText);

/**
 * A condition on `column` (a uuid) for the ids that begin with `prefix` (as IdPrefix checked it):
 * a range the primary key's index answers, and the text pattern that keeps a dash typed where no
 * id has one from matching. `param` adds a value and returns its placeholder.
 */
export function idPrefixCondition(column: string, prefix: string, param: (value: string) => string): string {
  const hex = prefix.replaceAll('-', '');
  const uuid = (h: string) => `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  return `(${column} BETWEEN ${param(uuid(hex.padEnd(32, '0')))}::uuid AND ${param(uuid(hex.padEnd(32, 'f')))}::uuid AND ${column}::text LIKE ${param(`${prefix}%`)})`;
}

/** A pool whose connections work inside `schema` (search_path), with an error handler. */
export function createPool(databaseUrl: string, schema: string, logger: Logger, max = 10): Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max,
    options: `-c search_path=${quoteIdent(schema)},public`,
    application_name: `hodei-${schema}`,
  });
  // expected when PostgreSQL restarts or ends backends: the pool opens a new connection when one is needed
  pool.on('error', (err: Error & { code?: string }) => logger.warn({ code: err.code, reason: err.message }, 'an idle postgres connection was closed by the server; it will be replaced'));
  return pool;
}

/** A Postgres identifier, quoted: any name a database may have (capitals, dashes, quotes). */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0') || Buffer.byteLength(name) > 63) throw new Error(`invalid identifier ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out client's connection that ends (PostgreSQL restarted, the backend terminated)
  // emits 'error': unheard, it would take the process down. Its next query fails with it anyway.
  let lost: Error | undefined;
  const onError = (err: Error) => (lost = err);
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.removeListener('error', onError);
    client.release(lost); // a broken connection is closed, not handed out again
  }
}

/** Tables PostgreSQL estimates at up to this many rows are counted; larger ones are given as estimated. */
export const EXACT_ROWS_UP_TO = 100_000;

/**
 * Rows and on-disk bytes (table, indexes, toast) of `table`, whose name the caller writes itself,
 * never from input. The rows are counted while the table is small; past EXACT_ROWS_UP_TO they are
 * PostgreSQL's estimate (its last ANALYZE, scaled to the table's size now, as its planner does):
 * counting 50,000,000 log lines read the whole table, seconds for a figure nobody needs exact.
 */
export async function tableSize(db: Pool | PoolClient, table: string): Promise<{ rows: number; bytes: number }> {
  const { rows } = await db.query<{ estimate: number | null; bytes: number }>(
    `SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0
              THEN (c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint END AS estimate,
            pg_total_relation_size(c.oid) AS bytes
     FROM pg_class c WHERE c.oid = $1::regclass`,
    [table],
  );
  const { estimate, bytes } = rows[0]!;
  if (estimate !== null && estimate > EXACT_ROWS_UP_TO) return { rows: estimate, bytes };
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM ${table}`);
  return { rows: count.rows[0]!.n, bytes };
}

interface MigrationFile {
  id: number;
  name: string;
  path: string;
}

async function migrationFiles(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return names.map((name) => {
    const m = /^(\d+)_/.exec(name);
    if (!m) throw new Error(`migration ${name} must start with its number (001_what.sql)`);
    return { id: Number(m[1]), name, path: join(dir, name) };
  });
}

/**
 * Applies the numbered `.sql` files of `dir` to `schema`, each in its own transaction with the row
 * that records it, under an advisory lock so replicas starting together take turns. Refuses to run
 * against a database that is newer than the code.
 */
export async function migrate(pool: Pool, schema: string, dir: string, logger: Logger): Promise<number> {
  const files = await migrationFiles(dir);
  const s = quoteIdent(schema);
  const lockKey = `hodei-migrate:${schema}`;
  let applied = 0;
  for (const file of [null, ...files]) {
    await withTransaction(pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${s}.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      if (file === null) {
        const { rows } = await client.query<{ max: number | null }>(`SELECT max(id) AS max FROM ${s}.migrations`);
        const latest = files.at(-1)?.id ?? 0;
        if ((rows[0]?.max ?? 0) > latest)
          throw new Error(`database schema ${schema} is at migration ${rows[0]?.max}, newer than this code (${latest})`);
        return;
      }
      const done = await client.query(`SELECT 1 FROM ${s}.migrations WHERE id = $1`, [file.id]);
      if (done.rowCount) return;
      await client.query(`SET LOCAL search_path TO ${s}, public`);
      await client.query(await readFile(file.path, 'utf8'));
      await client.query(`INSERT INTO ${s}.migrations (id, name) VALUES ($1, $2)`, [file.id, file.name]);
      applied += 1;
      logger.info({ migration: file.name, schema }, 'migration applied');
    });
  }
  return applied;
}

/** Runs `fn` on a connection to the server's `postgres` database, with the name of `databaseUrl`'s database. */
async function onMaintenanceDb(databaseUrl: string, fn: (client: pg.Client, name: string) => Promise<void>): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    await fn(client, name);
  } finally {
    await client.end();
  }
}

/** Creates the database of `databaseUrl` when it does not exist yet. */
export function ensureDatabase(databaseUrl: string): Promise<void> {
  return onMaintenanceDb(databaseUrl, async (client, name) => {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!rowCount) await client.query(`CREATE DATABASE ${quoteIdent(name)}`).catch((err: { code?: string }) => {
      // created meanwhile by a sibling service: 42P04, or 23505 when both inserts race in pg_database
      if (err.code !== '42P04' && err.code !== '23505') throw err;
    });
  });
}

export function dropDatabase(databaseUrl: string): Promise<void> {
  return onMaintenanceDb(databaseUrl, async (client, name) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
  });
}
