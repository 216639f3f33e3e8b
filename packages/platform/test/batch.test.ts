import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batcher, createLogger, createPool, createTestEnv, ensureDatabase, type Pool } from '../src/index.js';

const env = createTestEnv();
let pool: Pool;

beforeAll(async () => {
  await ensureDatabase(env.databaseUrl);
  pool = createPool(env.databaseUrl, 'batch_test', createLogger('test', 'silent'));
  await pool.query('CREATE SCHEMA IF NOT EXISTS batch_test');
  await pool.query('CREATE TABLE batch_test.items (id integer PRIMARY KEY, name text NOT NULL CHECK (name <> $$bad$$))');
});

afterAll(async () => {
  await pool.end();
  await env.cleanup();
});

/** Inserts rows in one statement, answering each row's id; records every statement's size. */
function inserter(statements: number[]) {
  return new Batcher<{ id: number; name: string }, number>(async (items) => {
    statements.push(items.length);
    const { rows } = await pool.query<{ id: number }>(
      'INSERT INTO batch_test.items (id, name) SELECT * FROM unnest($1::int[], $2::text[]) RETURNING id',
      [items.map((i) => i.id), items.map((i) => i.name)],
    );
    return items.map((i) => rows.find((r) => r.id === i.id)!.id);
  });
}

describe('Batcher', () => {
  it('sends what is added in one turn of the event loop as one statement, each caller getting its own result', async () => {
    const statements: number[] = [];
    const batcher = inserter(statements);
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => batcher.add({ id: i + 1, name: `n${i}` })));
    expect(ids).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(statements).toEqual([50]);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM batch_test.items WHERE id <= 50');
    expect(rows[0]!.n).toBe(50);
  });

  it('adds arriving during a statement go together in the next one', async () => {
    const statements: number[] = [];
    const batcher = inserter(statements);
    const first = batcher.add({ id: 101, name: 'a' });
    await new Promise((r) => setImmediate(r)); // the first statement is under way
    const later = Array.from({ length: 10 }, (_, i) => batcher.add({ id: 102 + i, name: 'b' }));
    await Promise.all([first, ...later]);
    expect(statements).toEqual([1, 10]);
  });

  it('a row the database refuses fails only its own caller; the others are stored', async () => {
    const statements: number[] = [];
    const batcher = inserter(statements);
    const results = await Promise.allSettled([
      batcher.add({ id: 201, name: 'ok' }),
      batcher.add({ id: 202, name: 'bad' }),
      batcher.add({ id: 203, name: 'ok' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/check constraint/);
    expect(statements).toEqual([3, 1, 1, 1]);
    const { rows } = await pool.query<{ id: number }>('SELECT id FROM batch_test.items WHERE id BETWEEN 201 AND 203 ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual([201, 203]);
  });
});
