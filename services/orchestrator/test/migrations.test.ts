// The orchestrator's migrations: applying them again changes nothing, and replicas booting
// together on an empty database both come up.
import { createLogger, createPool, createTestEnv, ensureDatabase, migrate, type Pool, type TestEnv } from '@hodei/platform';
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
      expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await db.end();
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
