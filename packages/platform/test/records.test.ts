import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createPool, createTestEnv, ensureDatabase, fromRecords, records, type Pool } from '../src/index.js';

const env = createTestEnv();
let pool: Pool;

beforeAll(async () => {
  await ensureDatabase(env.databaseUrl);
  pool = createPool(env.databaseUrl, 'records_test', createLogger('test', 'silent'));
  await pool.query('CREATE SCHEMA records_test');
  await pool.query('CREATE TABLE items (id integer PRIMARY KEY, note text)');
  await pool.query("INSERT INTO items SELECT i, 'n' || i FROM generate_series(1, 20000) AS i");
  await pool.query('ANALYZE items');
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

describe('fromRecords', () => {
  it('gives back every record, with quotes, backslashes, braces, unicode, JSON and nulls intact', async () => {
    const items = [
      { v_id: 1, v_text: 'a "quoted", {braced} \\ back\\slash\n', v_doc: { nested: ['x', { y: null }] } },
      { v_id: 2, v_text: null, v_doc: null },
      { v_id: 3, v_text: 'ünïcødé ✓ 🚀', v_doc: [1, 2] },
    ];
    const { rows } = await pool.query(`SELECT v.* FROM ${fromRecords('$1', 'v_id integer, v_text text, v_doc jsonb')} ORDER BY v_id`, [records(items)]);
    expect(rows).toEqual(items);
  });

  it('stores a NUL character, which PostgreSQL refuses in text and jsonb, as U+FFFD', async () => {
    const items = [{ v_id: 1, v_text: 'a\u0000b', v_doc: { progress: { message: 'x\u0000' } } }];
    const { rows } = await pool.query(`SELECT v.* FROM ${fromRecords('$1', 'v_id integer, v_text text, v_doc jsonb')}`, [records(items)]);
    expect(rows).toEqual([{ v_id: 1, v_text: 'a\uFFFDb', v_doc: { progress: { message: 'x\uFFFD' } } }]);
  });

  it('is planned for the rows it holds: a join looks them up by index instead of scanning the table', async () => {
    const { rows } = await pool.query(
      `EXPLAIN UPDATE items SET note = v_note FROM ${fromRecords('$1', 'v_id integer, v_note text')} WHERE id = v_id`,
      [records([{ v_id: 7, v_note: 'seven' }, { v_id: 19_999, v_note: 'last' }])],
    );
    const plan = rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/Index Scan using items_pkey/);
    expect(plan).not.toMatch(/Seq Scan on items/);
  });
});
