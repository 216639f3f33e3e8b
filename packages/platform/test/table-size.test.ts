// tableSize, behind the storage figures of GET /api/v1/stats: small tables counted, large ones as
// PostgreSQL estimates them (counting a month of log lines read them all).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createPool, createTestEnv, ensureDatabase, EXACT_ROWS_UP_TO, tableSize, type Pool } from '../src/index.js';

const env = createTestEnv();
let pool: Pool;

beforeAll(async () => {
  await ensureDatabase(env.databaseUrl);
  pool = createPool(env.databaseUrl, 'public', createLogger('test', 'silent'));
});
afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

describe('tableSize', () => {
  it('counts a small table, analyzed or not', async () => {
    await pool.query('CREATE TABLE small (n int)');
    expect(await tableSize(pool, 'small')).toEqual({ rows: 0, bytes: expect.any(Number) });
    await pool.query('INSERT INTO small SELECT generate_series(1, 10)');
    expect((await tableSize(pool, 'small')).rows).toBe(10);
    await pool.query('ANALYZE small');
    await pool.query('INSERT INTO small SELECT generate_series(1, 5)');
    expect((await tableSize(pool, 'small')).rows).toBe(15);
  });

  it('gives a large table\'s rows as estimated, without reading them', async () => {
    const n = 2 * EXACT_ROWS_UP_TO;
    await pool.query('CREATE TABLE large (n int)');
    await pool.query('INSERT INTO large SELECT generate_series(1, $1::int)', [n]);
    await pool.query('ANALYZE large');
    const size = await tableSize(pool, 'large');
    expect(size.rows).toBe(n);
    expect(size.bytes).toBeGreaterThan(n * 4);
    // rows deleted but not yet vacuumed: a count would find none; the estimate goes by the table's pages
    await pool.query('DELETE FROM large');
    expect((await tableSize(pool, 'large')).rows).toBe(n);
  });
});
