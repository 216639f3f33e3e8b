// POST /api/v1/executions/cleanup on more executions and lines than one of its statements takes:
// what goes and what stays, and no statement deleting more than its bounded batch.
import { describe, expect, it } from 'vitest';
import { workerManagerAlone } from './alone.js';
import { CLEANUP_EXECUTIONS, CLEANUP_LINES } from '../src/store/executions.js';

const alone = workerManagerAlone();

const JOB_A = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a11';
const JOB_B = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a22';
const JOB_GONE = '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a33';

/** `n` executions named `name`, the i-th created `daysAgo` days ago plus i ms, finished a second later unless still going. */
async function insert(name: string, jobId: string | null, status: string, n: number, daysAgo: number): Promise<void> {
  const final = status !== 'running' && status !== 'queued';
  await alone.svc.ctx.db.query(
    `INSERT INTO executions (id, job_id, name, status, priority, spec, created_at, started_at, finished_at, last_seq)
     SELECT gen_random_uuid(), $1, $2, $3, 5, '{}', c, c, CASE WHEN $4 THEN c + interval '1 second' END, CASE WHEN $4 THEN 0 END
     FROM (SELECT now() - $6 * interval '1 day' + i * interval '1 millisecond' AS c FROM generate_series(1, $5) i) s`,
    [jobId, name, status, final, n, daysAgo],
  );
}

/** `n` lines for each execution named `name`. */
async function addLines(name: string, n: number): Promise<void> {
  await alone.svc.ctx.db.query(
    `INSERT INTO log_lines (execution_id, seq, stream, line, ts)
     SELECT e.id, s, 1, 'line ' || s, now() FROM executions e, generate_series(1, $2) s WHERE e.name = $1`,
    [name, n],
  );
}

const post = async (body: unknown) => {
  const res = await fetch(`${alone.svc.url}/api/v1/executions/cleanup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  return res.json();
};

describe('cleanup of many executions', () => {
  it('deletes what is over and not its job\'s newest, with its lines, in statements of bounded size; keeps the rest whole', async () => {
    const db = alone.svc.ctx.db;
    await insert('a-old', JOB_A, 'completed', 1500, 10);
    await insert('a-newest', JOB_A, 'failed', 1, 9); // over, but job A's newest
    await insert('b-old', JOB_B, 'failed', 3, 10);
    await insert('b-running', JOB_B, 'running', 1, 9); // never finished: stays, and job B's old ones go
    await insert('adhoc-old', null, 'cancelled', 700, 8);
    await insert('adhoc-huge', null, 'completed', 1, 8);
    await insert('adhoc-recent', null, 'completed', 5, 0);
    await insert('gone-job', JOB_GONE, 'completed', 2, 0); // a job being deleted: all of its executions go, recent or not
    await addLines('a-old', 20);
    await addLines('adhoc-huge', 2 * CLEANUP_LINES + 123);
    for (const kept of ['a-newest', 'b-running', 'adhoc-recent']) await addLines(kept, 7);
    // rows each DELETE statement took, per table
    await db.query(`CREATE TABLE deletes (tbl text, n bigint);
      CREATE FUNCTION count_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO deletes SELECT TG_TABLE_NAME, count(*) FROM gone; RETURN NULL; END $$;
      CREATE TRIGGER lines_deleted AFTER DELETE ON log_lines REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deletes();
      CREATE TRIGGER executions_deleted AFTER DELETE ON executions REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION count_deletes();`);

    const body = { job_ids: [JOB_GONE], finished_before: new Date(Date.now() - 7 * 86_400_000).toISOString() };
    const expected = { executions: 1500 + 3 + 700 + 1 + 2, older_executions: 1503, adhoc_executions: 701 };
    expect(await post({ ...body, dry_run: true })).toEqual(expected);
    expect(await post(body)).toEqual(expected);

    const { rows: left } = await db.query<{ name: string; n: number; lines: number }>(
      `SELECT name, count(*)::int AS n, sum((SELECT count(*) FROM log_lines l WHERE l.execution_id = e.id))::int AS lines
       FROM executions e GROUP BY name ORDER BY name`,
    );
    expect(left).toEqual([
      { name: 'a-newest', n: 1, lines: 7 },
      { name: 'adhoc-recent', n: 5, lines: 35 },
      { name: 'b-running', n: 1, lines: 7 },
    ]);
    expect((await db.query('SELECT count(*)::int AS n FROM log_lines')).rows[0].n).toBe(49);
    const { rows: stmts } = await db.query<{ tbl: string; statements: number; most: number; rows: number }>(
      'SELECT tbl, count(*)::int AS statements, max(n)::int AS most, sum(n)::int AS rows FROM deletes WHERE n > 0 GROUP BY tbl ORDER BY tbl',
    );
    expect(stmts).toEqual([
      { tbl: 'executions', statements: 3, most: CLEANUP_EXECUTIONS, rows: expected.executions },
      { tbl: 'log_lines', statements: expect.any(Number), most: CLEANUP_LINES, rows: 1500 * 20 + 2 * CLEANUP_LINES + 123 },
    ]);
    expect(await post(body)).toEqual({ executions: 0, older_executions: 0, adhoc_executions: 0 });
  });
});
