// Aggregates for GET /api/v1/stats.
import { tableSize } from '@hodei/platform';
import { FINAL_EXECUTION, type Db } from './db.js';

export interface JobStats {
  total_jobs: number;
  by_status: Record<string, number>;
  by_priority: Record<string, number>;
  success_rate: number | null;
  avg_duration_ms: number | null;
}

export async function jobStats(db: Db): Promise<JobStats> {
  const byStatus = await db.query<{ status: string; n: number }>('SELECT status, count(*) AS n FROM jobs GROUP BY status');
  const byPriority = await db.query<{ priority: number; n: number }>('SELECT priority, count(*) AS n FROM jobs GROUP BY priority ORDER BY priority');
  const runs = await db.query<{ finished: number; completed: number; avg: string | null }>(
    `SELECT count(*) FILTER (WHERE status IN ${FINAL_EXECUTION}) AS finished,
            count(*) FILTER (WHERE status = 'completed') AS completed,
            avg(duration_ms) FILTER (WHERE status IN ${FINAL_EXECUTION}) AS avg
     FROM job_executions`,
  );
  const r = runs.rows[0];
  const by_status = Object.fromEntries(byStatus.rows.map((x) => [x.status, x.n]));
  return {
    total_jobs: byStatus.rows.reduce((sum, x) => sum + x.n, 0),
    by_status,
    by_priority: Object.fromEntries(byPriority.rows.map((x) => [String(x.priority), x.n])),
    success_rate: r && r.finished > 0 ? r.completed / r.finished : null,
    avg_duration_ms: r?.avg == null ? null : Math.round(Number(r.avg)),
  };
}

const TABLES = ['pipelines', 'jobs', 'job_executions', 'pipeline_runs', 'pipeline_run_jobs'] as const;

/** Rows and on-disk bytes (table + indexes + toast) of the orchestrator's tables. */
export async function tableStorage(db: Db): Promise<Record<string, { rows: number; bytes: number }>> {
  const out: Record<string, { rows: number; bytes: number }> = {};
  for (const t of TABLES) out[t] = await tableSize(db, t);
  return out;
}
