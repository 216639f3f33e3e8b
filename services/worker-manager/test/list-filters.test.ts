// GET /api/v1/executions with each filter it offers, paged with limit/offset: the right rows in the
// list's order with the right X-Total-Count, and each filter served by an index in that order (a
// month of executions read whole for a worker's page or its count took seconds).
import { describe, expect, it } from 'vitest';
import { workerManagerAlone } from './alone.js';

const alone = workerManagerAlone();

const WORKERS = ['01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a01', '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a02', '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6a03'];
const JOBS = ['01936f9e-3b7a-7c4e-9a51-2f1d8e0b6b01', '01936f9e-3b7a-7c4e-9a51-2f1d8e0b6b02'];
const STATUSES = ['completed', 'failed', 'cancelled', 'running'];

async function list(query: string): Promise<{ ids: string[]; total: number }> {
  const res = await fetch(`${alone.svc.url}/api/v1/executions?${query}`);
  expect(res.status).toBe(200);
  return { ids: ((await res.json()) as { id: string }[]).map((e) => e.id), total: Number(res.headers.get('x-total-count')) };
}

describe('executions list filters', () => {
  it('each filter and pairs of them, page by page with offset: the rows of a walk of the whole list, newest first, with their total', async () => {
    const db = alone.svc.ctx.db;
    // 1,200 executions, several in the same millisecond (the id breaks the tie)
    await db.query(
      `INSERT INTO executions (id, job_id, name, worker_id, status, priority, spec, created_at)
       SELECT gen_random_uuid(), ($1::uuid[])[1 + i % 2], 'e' || i, ($2::uuid[])[1 + i % 3], ($3::text[])[1 + i % 4], 5, '{}',
              now() - (i / 3) * interval '1 second'
       FROM generate_series(1, 1200) i`,
      [JOBS, WORKERS, STATUSES],
    );
    const { rows: all } = await db.query<{ id: string; job_id: string; worker_id: string; status: string }>(
      'SELECT id, job_id, worker_id, status FROM executions ORDER BY created_at DESC, id DESC',
    );
    const filters: Array<Record<string, string>> = [
      {},
      { worker_id: WORKERS[1]! },
      { status: 'failed' },
      { job_id: JOBS[0]! },
      { worker_id: WORKERS[2]!, status: 'completed' },
      { job_id: JOBS[1]!, status: 'running' },
      { job_id: JOBS[0]!, worker_id: WORKERS[0]! },
    ];
    for (const f of filters) {
      const expected = all.filter((e) => Object.entries(f).every(([k, v]) => e[k as keyof typeof e] === v)).map((e) => e.id);
      const paged: string[] = [];
      for (let offset = 0; offset < expected.length; offset += 70) {
        const page = await list(new URLSearchParams({ ...f, limit: '70', offset: String(offset) }).toString());
        expect(page.total, JSON.stringify(f)).toBe(expected.length);
        paged.push(...page.ids);
      }
      expect(paged, JSON.stringify(f)).toEqual(expected);
      expect(await list(new URLSearchParams({ ...f, offset: String(expected.length) }).toString())).toEqual({ ids: [], total: expected.length });
    }

    // how PostgreSQL answers each filter's count and page with the table too large to read whole
    await db.query('VACUUM ANALYZE executions');
    const plan = async (sql: string, args: unknown[]) => {
      const client = await db.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL enable_seqscan = off');
        const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, args);
        await client.query('ROLLBACK');
        return JSON.stringify(rows[0]!['QUERY PLAN']);
      } finally {
        client.release();
      }
    };
    for (const [where, args] of [
      ['worker_id = $1', [WORKERS[0]]],
      ['status = $1', ['failed']],
      ['job_id = $1', [JOBS[0]]],
      ['worker_id = $1 AND status = $2', [WORKERS[0], 'completed']],
    ] as const) {
      for (const sql of [
        `SELECT count(*) FROM executions WHERE ${where}`,
        `SELECT id FROM executions WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT 50 OFFSET 500`,
      ]) {
        const p = await plan(sql, [...args]);
        expect(p, sql).toMatch(/"Node Type":"(Index Only Scan|Bitmap Index Scan)"/);
        expect(p, sql).not.toContain('Seq Scan');
        expect(p, sql).not.toContain('"Node Type":"Sort"');
      }
    }
  });
});
