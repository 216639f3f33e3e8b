// The orchestrator's migrations: applying them again changes nothing, and replicas booting
// together on an empty database both come up.
import { createLogger, createPool, createTestEnv, ensureDatabase, migrate, type Pool, type TestEnv } from '@hodei/platform';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { definition, startOrchestrator } from '../src/service.js';
import { call } from './helpers.js';

const envs: TestEnv[] = [];
afterAll(async () => {
  for (const env of envs) await env.cleanup();
});

async function schemaShape(db: Pool): Promise<unknown[]> {
  const { rows } = await db.query(
    `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
     WHERE table_schema = 'orchestrator' ORDER BY table_name, ordinal_position`,
  );
  return rows;
}

describe('migrations', () => {
  it('migrating twice applies nothing the second time and changes no table', async () => {
    const env = createTestEnv();
    envs.push(env);
    const logger = createLogger('orchestrator', 'silent');
    await ensureDatabase(env.databaseUrl);
    const db = createPool(env.databaseUrl, definition.schema, logger);
    try {
      const first = await migrate(db, definition.schema, definition.migrationsDir, logger);
      expect(first).toBeGreaterThan(0);
      const before = await schemaShape(db);
      expect(before.length).toBeGreaterThan(10);
      const second = await migrate(db, definition.schema, definition.migrationsDir, logger);
      expect(second).toBe(0);
      expect(await schemaShape(db)).toEqual(before);
      const { rows } = await db.query('SELECT id FROM orchestrator.migrations ORDER BY id');
      expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    } finally {
      await db.end();
    }
  });

  it('jobs of one pipeline that already share a name keep it on the oldest; the others get their id suffix', async () => {
    const env = createTestEnv();
    envs.push(env);
    const logger = createLogger('orchestrator', 'silent');
    await ensureDatabase(env.databaseUrl);
    const db = createPool(env.databaseUrl, definition.schema, logger);
    const before = await mkdtemp(join(tmpdir(), 'orchestrator-migrations-'));
    try {
      // the database as the code before the unique names left it
      for (const f of await readdir(definition.migrationsDir)) if (Number(f.slice(0, 3)) < 6) await cp(join(definition.migrationsDir, f), join(before, f));
      await migrate(db, definition.schema, before, logger);
      const p = '01936f9e-0000-7000-8000-000000000001';
      const q = '01936f9e-0000-7000-8000-000000000002';
      await db.query("INSERT INTO pipelines (id, name) VALUES ($1, 'p'), ($2, 'q')", [p, q]);
      const jobs: Array<[string, string | null, string]> = [
        ['01936f9e-0000-7000-8000-00000000000a', p, 'build'],
        ['01936f9e-0000-7000-8000-00000000000b', p, 'build'],
        ['01936f9e-0000-7000-8000-00000000000c', p, 'build'],
        ['01936f9e-0000-7000-8000-00000000000d', q, 'build'],
        ['01936f9e-0000-7000-8000-00000000000e', null, 'build'],
        ['01936f9e-0000-7000-8000-00000000000f', null, 'build'],
      ];
      for (const [id, pipelineId, name] of jobs) await db.query('INSERT INTO jobs (id, pipeline_id, name) VALUES ($1, $2, $3)', [id, pipelineId, name]);
      expect(await migrate(db, definition.schema, definition.migrationsDir, logger)).toBeGreaterThan(0);
      const { rows } = await db.query<{ id: string; name: string }>('SELECT id, name FROM jobs ORDER BY id');
      expect(rows.map((r) => r.name)).toEqual(['build', 'build-0000000b', 'build-0000000c', 'build', 'build', 'build']);
      await expect(db.query("INSERT INTO jobs (id, pipeline_id, name) VALUES ('01936f9e-0000-7000-8000-000000000010', $1, 'build')", [p])).rejects.toMatchObject({
        constraint: 'jobs_pipeline_name_key',
      });
    } finally {
      await db.end();
      await rm(before, { recursive: true, force: true });
    }
  });

  it('two orchestrators booting at once on a fresh database both succeed and share data', async () => {
    const env = createTestEnv();
    envs.push(env);
    const [a, b] = await Promise.all([startOrchestrator(env.config('orchestrator')), startOrchestrator(env.config('orchestrator'))]);
    try {
      expect((await call(a.url, 'GET', '/health')).status).toBe(200);
      expect((await call(b.url, 'GET', '/health')).status).toBe(200);
      const p = await call(a.url, 'POST', '/api/v1/pipelines', { name: 'shared' });
      expect(p.status).toBe(201);
      expect((await call(b.url, 'GET', `/api/v1/pipelines/${p.body.id}`)).body.name).toBe('shared');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
