import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createPool, createTestEnv, dropDatabase, ensureDatabase, migrate, type Pool } from '../src/index.js';

const logger = createLogger('test', 'silent');
const env = createTestEnv();
let scratch = '';
let dir: string;
let pool: Pool;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'hodei-migrations-'));
  dir = join(scratch, 'good');
  await mkdir(dir);
  await writeFile(join(dir, '001_things.sql'), 'CREATE TABLE things (id serial PRIMARY KEY, name text NOT NULL);');
  await writeFile(join(dir, '002_more.sql'), "ALTER TABLE things ADD COLUMN kind text NOT NULL DEFAULT 'x';");
  await ensureDatabase(env.databaseUrl);
  pool = createPool(env.databaseUrl, 'svc_test', logger);
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('migrate', () => {
  it('migrates a fresh database, in the service schema, each file once', async () => {
    expect(await migrate(pool, 'svc_test', dir, logger)).toBe(2);
    const { rows } = await pool.query('SELECT id, name FROM svc_test.migrations ORDER BY id');
    expect(rows).toEqual([
      { id: 1, name: '001_things.sql' },
      { id: 2, name: '002_more.sql' },
    ]);
    await pool.query("INSERT INTO things (name) VALUES ('a')");
    const { rows: things } = await pool.query('SELECT name, kind FROM svc_test.things');
    expect(things).toEqual([{ name: 'a', kind: 'x' }]);
  });

  it('changes nothing when run again', async () => {
    expect(await migrate(pool, 'svc_test', dir, logger)).toBe(0);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM svc_test.things');
    expect(rows[0].n).toBe(1);
  });

  it('lets replicas migrate at the same time: every file applied exactly once', async () => {
    const pools = Array.from({ length: 4 }, () => createPool(env.databaseUrl, 'svc_race', logger, 2));
    try {
      const applied = await Promise.all(pools.map((p) => migrate(p, 'svc_race', dir, logger)));
      expect(applied.reduce((a, b) => a + b, 0)).toBe(2);
      const { rows } = await pool.query('SELECT count(*)::int AS n FROM svc_race.migrations');
      expect(rows[0].n).toBe(2);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('refuses a database newer than the code', async () => {
    await pool.query("INSERT INTO svc_test.migrations (id, name) VALUES (3, '003_future.sql')");
    await expect(migrate(pool, 'svc_test', dir, logger)).rejects.toThrow(/newer than this code/);
  });

  it('rolls a failing migration back whole, bookkeeping included', async () => {
    const bad = join(scratch, 'bad');
    await mkdir(bad);
    await writeFile(join(bad, '001_ok.sql'), 'CREATE TABLE ok (id int);');
    await writeFile(join(bad, '002_bad.sql'), 'CREATE TABLE half (id int); SELECT no_such_function();');
    await expect(migrate(pool, 'svc_bad', bad, logger)).rejects.toThrow();
    const { rows } = await pool.query('SELECT id FROM svc_bad.migrations');
    expect(rows).toEqual([{ id: 1 }]);
    const half = await pool.query("SELECT to_regclass('svc_bad.half') AS t");
    expect(half.rows[0].t).toBeNull();
  });
});

describe('ensureDatabase', () => {
  it('creates and drops a database whose name has capitals, a dash and a quote', async () => {
    const name = `Hodei-Test "q" ${Date.now()}`;
    const url = new URL(env.databaseUrl);
    url.pathname = `/${encodeURIComponent(name)}`;
    const exists = async () => {
      const other = createPool(env.databaseUrl, 'svc_test', logger);
      try {
        return (await other.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1;
      } finally {
        await other.end();
      }
    };
    await ensureDatabase(url.toString());
    await ensureDatabase(url.toString()); // a second time: nothing to do
    expect(await exists()).toBe(true);
    await dropDatabase(url.toString());
    expect(await exists()).toBe(false);
  });
});
