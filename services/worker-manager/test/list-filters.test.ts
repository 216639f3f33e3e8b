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

  it('id_prefix: the executions whose id begins with it (any case, dashes where ids have them), from the primary key; a prefix no id can have is a 400 naming it', async () => {
    const db = alone.svc.ctx.db;
    await db.query(
      `INSERT INTO executions (id, name, status, priority, spec) SELECT gen_random_uuid(), 'p' || i, 'completed', 5, '{}' FROM generate_series(1, 600) i`,
    );
    const { rows } = await db.query<{ id: string }>('SELECT id FROM executions ORDER BY created_at DESC, id DESC');
    const all = rows.map((r) => r.id);
    const some = all[123]!;
    for (const prefix of [some.slice(0, 1), some.slice(0, 2), some.slice(0, 3), some.slice(0, 9), some.slice(0, 14).toUpperCase(), some.slice(0, 20), some, '0', 'f']) {
      const expected = all.filter((id) => id.startsWith(prefix.toLowerCase()));
      const got = await list(new URLSearchParams({ id_prefix: prefix, limit: '1000' }).toString());
      expect(got, prefix).toEqual({ ids: expected, total: expected.length });
    }
    expect((await list(`id_prefix=${some.slice(0, 4)}-${some.slice(4, 8)}`)).total).toBe(0);
    expect((await list(`id_prefix=${some.slice(0, 8)}&job_id=${JOBS[0]}`)).total).toBe(0);

    for (const bad of ['xyz', '-', `${some.replaceAll('-', '')}0`, '']) {
      const res = await fetch(`${alone.svc.url}/api/v1/executions?id_prefix=${encodeURIComponent(bad)}`);
      expect(res.status, bad).toBe(400);
      expect(((await res.json()) as { errors: { path: string }[] }).errors.map((e) => e.path), bad).toEqual(['id_prefix']);
    }

    await db.query('VACUUM ANALYZE executions');
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      const { rows: plan } = await client.query<{ 'QUERY PLAN': unknown }>(
        `EXPLAIN (FORMAT JSON) SELECT count(*) FROM executions WHERE id BETWEEN $1::uuid AND $2::uuid AND id::text LIKE $3`,
        ['01a20000-0000-0000-0000-000000000000', '01a2ffff-ffff-ffff-ffff-ffffffffffff', '01a2%'],
      );
      await client.query('ROLLBACK');
      expect(JSON.stringify(plan[0]!['QUERY PLAN'])).toMatch(/"Index Name":"executions_pkey"/);
    } finally {
      client.release();
    }
  });
});
