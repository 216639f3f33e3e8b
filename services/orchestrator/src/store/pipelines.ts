// SQL for pipelines.
import { iso } from '@hodei/platform';
import type { Pipeline, PipelinePatch } from '@hodei/types';
import type { Db } from './db.js';
import { Where } from './db.js';

interface PipelineRow {
  id: string;
  name: string;
  description: string | null;
  status: 'active' | 'archived';
  created_at: Date;
  updated_at: Date;
}

function toPipeline(r: PipelineRow): Pipeline {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    status: r.status,
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
  };
}

export async function insertPipeline(db: Db, id: string, name: string, description: string | null): Promise<Pipeline> {
  const { rows } = await db.query<PipelineRow>(
    'INSERT INTO pipelines (id, name, description) VALUES ($1, $2, $3) RETURNING *',
    [id, name, description],
  );
  return toPipeline(rows[0]!);
}

export async function getPipeline(db: Db, id: string, lock = false): Promise<Pipeline | null> {
  const { rows } = await db.query<PipelineRow>(`SELECT * FROM pipelines WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] ? toPipeline(rows[0]) : null;
}

export async function listPipelines(
  db: Db,
  q: { status?: 'active' | 'archived' | undefined; name?: string | undefined; limit: number; offset: number },
): Promise<{ items: Pipeline[]; total: number }> {
  const w = new Where();
  if (q.status) w.add((p) => `status = ${p}`, q.status);
  if (q.name) w.add((p) => `name = ${p}`, q.name);
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM pipelines ${w}`, w.values);
  const limit = w.param(q.limit);
  const offset = w.param(q.offset);
  const { rows } = await db.query<PipelineRow>(
    `SELECT * FROM pipelines ${w} ORDER BY created_at DESC, id DESC LIMIT ${limit} OFFSET ${offset}`,
    w.values,
  );
  return { items: rows.map(toPipeline), total: count.rows[0]?.n ?? 0 };
}

export async function updatePipeline(db: Db, id: string, patch: PipelinePatch): Promise<Pipeline | null> {
  const { rows } = await db.query<PipelineRow>(
    `UPDATE pipelines SET
       name = CASE WHEN $2 THEN $3 ELSE name END,
       description = CASE WHEN $4 THEN $5 ELSE description END,
       status = CASE WHEN $6 THEN $7 ELSE status END,
       updated_at = now()
     WHERE id = $1 RETURNING *`,
    [
      id,
      patch.name !== undefined, patch.name ?? null,
      patch.description !== undefined, patch.description ?? null,
      patch.status !== undefined, patch.status ?? null,
    ],
  );
  return rows[0] ? toPipeline(rows[0]) : null;
}

/** Deletes the pipeline and (by cascade) its jobs and their executions. */
export async function deletePipeline(db: Db, id: string): Promise<void> {
  await db.query('DELETE FROM pipelines WHERE id = $1', [id]);
}
