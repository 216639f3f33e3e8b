// Connections PostgreSQL ends (a restart, pg_terminate_backend). A transaction's fails with that
// error and does not take the process down: the checked-out client's 'error' event had no listener,
// and the orchestrator exited on it ("Unhandled 'error' event"). An idle one is logged in one short
// line, not a stack and the whole client.
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger, createPool, createTestEnv, ensureDatabase, withTransaction, type Pool } from '../src/index.js';

const env = createTestEnv();
let pool: Pool;
let admin: Pool;
const logged: Record<string, unknown>[] = [];

beforeAll(async () => {
  await ensureDatabase(env.databaseUrl);
  pool = createPool(env.databaseUrl, 'public', pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) }), 2);
  admin = createPool(env.databaseUrl, 'public', createLogger('test', 'silent'), 1);
});

afterAll(async () => {
  await pool?.end();
  await admin?.end();
  await env.cleanup();
});

it('a transaction whose connection is terminated rejects, and the pool goes on with a new connection', async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.prependListener('uncaughtException', onUncaught);
  try {
    let pid: number | undefined;
    let terminated!: () => void;
    const gone = new Promise<void>((resolve) => (terminated = resolve));
    const tx = withTransaction(pool, async (client) => {
      pid = ((await client.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number }).pid;
      await gone; // the connection ends while the transaction waits for something else
      await client.query('SELECT 1');
    });
    const settled = tx.then(
      () => null,
      (err: unknown) => err,
    );
    while (pid === undefined) await new Promise((r) => setTimeout(r, 10));
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    // the client hears of it (its socket ends) before the transaction goes on
    await new Promise((r) => setTimeout(r, 200));
    terminated();
    expect(await settled).toBeInstanceOf(Error);
    expect(uncaught).toEqual([]);
    const { rows } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect(rows[0]!.pid).not.toBe(pid);
  } finally {
    process.removeListener('uncaughtException', onUncaught);
  }
});

it('an idle connection the server ends is a short warning, and the next query gets a new one', async () => {
  const { rows } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]!.pid;
  await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  for (let i = 0; i < 100 && !logged.length; i++) await new Promise((r) => setTimeout(r, 20));
  expect(logged).toEqual([
    expect.objectContaining({ level: 40, code: '57P01', reason: 'terminating connection due to administrator command', msg: 'an idle postgres connection was closed by the server; it will be replaced' }),
  ]);
  expect(logged[0]).not.toHaveProperty('err');
  expect((await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).not.toBe(pid);
});
