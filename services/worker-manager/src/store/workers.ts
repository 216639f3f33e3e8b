// SQL of the workers table: the worker agent processes this service started.
import { iso, type Pool } from '@hodei/platform';
import type { Capacity, ManagedWorker, ManagedWorkerStatus } from '@hodei/types';

interface WorkerRow {
  id: string;
  type: string;
  name: string | null;
  status: ManagedWorkerStatus;
  pid: number | null;
  host: string | null;
  labels: Record<string, string>;
  capacity: Capacity;
  exit_code: number | null;
  signal: string | null;
  started_at: Date;
  stopped_at: Date | null;
}

export function toWorker(r: WorkerRow): ManagedWorker {
  return {
    id: r.id,
    type: r.type,
    name: r.name,
    status: r.status,
    pid: r.pid,
    host: r.host,
    labels: r.labels,
    capacity: r.capacity,
    exit_code: r.exit_code,
    signal: r.signal,
    started_at: iso(r.started_at)!,
    stopped_at: iso(r.stopped_at),
  };
}

export async function insertWorker(
  db: Pool,
  w: { id: string; type: string; name: string | null; pid: number; host: string; labels: Record<string, string>; capacity: Capacity },
): Promise<ManagedWorker> {
  const { rows } = await db.query<WorkerRow>(
    `INSERT INTO workers (id, type, name, status, pid, host, labels, capacity)
     VALUES ($1, $2, $3, 'running', $4, $5, $6, $7) RETURNING *`,
    [w.id, w.type, w.name, w.pid, w.host, JSON.stringify(w.labels), JSON.stringify(w.capacity)],
  );
  return toWorker(rows[0]!);
}

export async function getWorker(db: Pool, id: string): Promise<ManagedWorker | null> {
  const { rows } = await db.query<WorkerRow>('SELECT * FROM workers WHERE id = $1', [id]);
  return rows[0] ? toWorker(rows[0]) : null;
}

export async function listWorkers(
  db: Pool,
  f: { status?: ManagedWorkerStatus | undefined; limit: number; offset: number },
): Promise<{ rows: ManagedWorker[]; total: number }> {
  const args: unknown[] = [];
  const w = f.status ? `WHERE status = $${args.push(f.status)}` : '';
  const count = await db.query<{ n: number }>(`SELECT count(*) AS n FROM workers ${w}`, args);
  const { rows } = await db.query<WorkerRow>(
    `SELECT * FROM workers ${w} ORDER BY started_at DESC, id DESC LIMIT $${args.length + 1} OFFSET $${args.length + 2}`,
    [...args, f.limit, f.offset],
  );
  return { rows: rows.map(toWorker), total: count.rows[0]?.n ?? 0 };
}

export async function setWorkerStatus(db: Pool, id: string, status: ManagedWorkerStatus): Promise<void> {
  await db.query(`UPDATE workers SET status = $2 WHERE id = $1 AND status IN ('starting', 'running', 'draining')`, [id, status]);
}

export async function markWorkerGone(
  db: Pool,
  id: string,
  u: { status: 'stopped' | 'exited'; exit_code: number | null; signal: string | null },
): Promise<ManagedWorker | null> {
  const { rows } = await db.query<WorkerRow>(
    `UPDATE workers SET status = $2, exit_code = $3, signal = $4, stopped_at = now() WHERE id = $1 RETURNING *`,
    [id, u.status, u.exit_code, u.signal],
  );
  return rows[0] ? toWorker(rows[0]) : null;
}

/** Deletes the workers stopped or exited more than `afterMs` ago (HODEI_FORGET_WORKERS_AFTER_MS, as
 *  the scheduler forgets them); returns their ids. */
export async function forgetGone(db: Pool, afterMs: number): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `DELETE FROM workers WHERE status IN ('stopped', 'exited') AND stopped_at < now() - make_interval(secs => $1::float8 / 1000) RETURNING id`,
    [afterMs],
  );
  return rows.map((r) => r.id);
}

/** Workers a previous run of this service left alive on this host. */
export async function liveOnHost(db: Pool, host: string): Promise<{ id: string; pid: number | null }[]> {
  const { rows } = await db.query<{ id: string; pid: number | null }>(
    `SELECT id, pid FROM workers WHERE host = $1 AND status IN ('starting', 'running', 'draining')`,
    [host],
  );
  return rows;
}
