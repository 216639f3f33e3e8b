// SQL for the worker registry. A worker's free capacity is its capacity minus what the executions
// placed on it (queue rows assigning/assigned) reserve.
import { iso, type Pool } from '@hodei/platform';
import type { RegistryWorker, RegistryWorkerStatus, WorkerRegister } from '@hodei/types';

interface WorkerRow {
  id: string;
  type: string;
  name: string | null;
  status: RegistryWorkerStatus;
  labels: Record<string, string>;
  slots: number;
  cpu_cores: number;
  memory_bytes: number;
  host: string | null;
  pid: number | null;
  registered_at: Date;
  last_heartbeat_at: Date | null;
  used_slots: number;
  used_cpu: number;
  used_memory: number;
  running: string[];
}

const round = (n: number) => Math.round(n * 1000) / 1000;

function toWorker(r: WorkerRow): RegistryWorker {
  return {
    id: r.id,
    type: r.type,
    name: r.name,
    status: r.status,
    labels: r.labels,
    capacity: { slots: r.slots, cpu_cores: r.cpu_cores, memory_bytes: r.memory_bytes },
    free: {
      slots: r.slots - r.used_slots,
      cpu_cores: round(r.cpu_cores - r.used_cpu),
      memory_bytes: r.memory_bytes - r.used_memory,
    },
    running_executions: r.running,
    host: r.host,
    pid: r.pid,
    registered_at: iso(r.registered_at)!,
    last_heartbeat_at: iso(r.last_heartbeat_at),
  };
}

/** Workers of `from` (a table or a subquery, named w) with what their running executions use. */
const selectWithUsage = (from: string) => `
  SELECT w.*, coalesce(u.n, 0)::int AS used_slots, coalesce(u.cpu, 0)::float8 AS used_cpu,
         coalesce(u.mem, 0)::float8 AS used_memory, coalesce(u.ids, '{}') AS running
  FROM ${from} w
  LEFT JOIN LATERAL (
    SELECT count(*) AS n, sum(q.cpu_cores) AS cpu, sum(q.memory_bytes) AS mem,
           array_agg(q.execution_id::text ORDER BY q.claimed_at, q.execution_id) AS ids
    FROM queue q WHERE q.worker_id = w.id AND q.state IN ('assigning', 'assigned')
  ) u ON true`;
const SELECT_WITH_USAGE = selectWithUsage('workers');

export interface HeartbeatResult {
  id: string;
  status: RegistryWorkerStatus;
  previous: RegistryWorkerStatus;
  last_heartbeat_at: string;
}

export class WorkerStore {
  constructor(private readonly db: Pool) {}

  /** Inserts or re-registers (status back to online); `created` tells which. */
  async register(id: string, w: WorkerRegister): Promise<{ worker: RegistryWorker; created: boolean }> {
    const { rows } = await this.db.query<{ created: boolean }>(
      `INSERT INTO workers (id, type, name, status, labels, slots, cpu_cores, memory_bytes, host, pid, last_heartbeat_at)
       VALUES ($1, $2, $3, 'online', $4, $5, $6, $7, $8, $9, now())
       ON CONFLICT (id) DO UPDATE SET type = EXCLUDED.type, name = EXCLUDED.name, status = 'online', labels = EXCLUDED.labels,
         slots = EXCLUDED.slots, cpu_cores = EXCLUDED.cpu_cores, memory_bytes = EXCLUDED.memory_bytes, host = EXCLUDED.host,
         pid = EXCLUDED.pid, last_heartbeat_at = now(), updated_at = now()
       RETURNING (xmax = 0) AS created`,
      [id, w.type, w.name ?? null, JSON.stringify(w.labels), w.capacity.slots, w.capacity.cpu_cores, w.capacity.memory_bytes, w.host ?? null, w.pid ?? null],
    );
    const worker = await this.get(id);
    return { worker: worker!, created: rows[0]!.created };
  }

  async get(id: string): Promise<RegistryWorker | null> {
    const { rows } = await this.db.query<WorkerRow>(`${SELECT_WITH_USAGE} WHERE w.id = $1`, [id]);
    return rows[0] ? toWorker(rows[0]) : null;
  }

  async list(f: { status?: RegistryWorkerStatus | undefined; limit: number; offset: number }): Promise<{ items: RegistryWorker[]; total: number }> {
    const args: unknown[] = [];
    const where = f.status ? `WHERE w.status = $${args.push(f.status)}` : '';
    // the page first: the usage is summed for its workers only, not for those an offset skips
    const page = `(SELECT * FROM workers w ${where} ORDER BY w.registered_at DESC, w.id DESC LIMIT $${args.push(f.limit)} OFFSET $${args.push(f.offset)})`;
    const { rows } = await this.db.query<WorkerRow>(`${selectWithUsage(page)} ORDER BY w.registered_at DESC, w.id DESC`, args);
    const c = await this.db.query<{ n: number }>(`SELECT count(*) AS n FROM workers w ${where}`, args.slice(0, f.status ? 1 : 0));
    return { items: rows.map(toWorker), total: c.rows[0]?.n ?? 0 };
  }

  /** Online and draining workers with what they have left, for the placer: it places on the
   *  online ones; the draining ones tell why an execution only they would take waits. */
  async active(): Promise<RegistryWorker[]> {
    const { rows } = await this.db.query<WorkerRow>(`${SELECT_WITH_USAGE} WHERE w.status IN ('online', 'draining')`);
    return rows.map(toWorker);
  }

  /** Records a heartbeat; a stopped (deregistered) worker stays stopped until it registers again. */
  async heartbeat(id: string, status: 'online' | 'draining'): Promise<HeartbeatResult | null> {
    const { rows } = await this.db.query<{ id: string; status: RegistryWorkerStatus; previous: RegistryWorkerStatus; last_heartbeat_at: Date }>(
      `WITH old AS (SELECT id, status FROM workers WHERE id = $1 FOR UPDATE)
       UPDATE workers w SET last_heartbeat_at = now(), updated_at = now(),
         status = CASE WHEN old.status = 'stopped' THEN 'stopped' ELSE $2 END
       FROM old WHERE w.id = old.id
       RETURNING w.id, w.status, old.status AS previous, w.last_heartbeat_at`,
      [id, status],
    );
    const r = rows[0];
    return r ? { id: r.id, status: r.status, previous: r.previous, last_heartbeat_at: iso(r.last_heartbeat_at)! } : null;
  }

  async setStatus(id: string, status: RegistryWorkerStatus, onlyFrom?: RegistryWorkerStatus[]): Promise<boolean> {
    const { rowCount } = await this.db.query(
      `UPDATE workers SET status = $2, updated_at = now() WHERE id = $1 ${onlyFrom ? 'AND status = ANY($3)' : ''}`,
      onlyFrom ? [id, status, onlyFrom] : [id, status],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Marks workers silent for longer than `timeoutMs` offline; returns their ids. */
  async expire(timeoutMs: number): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `UPDATE workers SET status = 'offline', updated_at = now()
       WHERE status IN ('online', 'draining') AND last_heartbeat_at < now() - make_interval(secs => $1::float8 / 1000)
       RETURNING id`,
      [timeoutMs],
    );
    return rows.map((r) => r.id);
  }

  /**
   * Deletes the workers that are stopped or offline, that nothing was heard of for `afterMs` (no
   * heartbeat, no status change) and that nothing is placed on; returns their ids. An agent that was
   * only silent (a laptop suspended over a weekend) registers again when its next heartbeat is
   * answered `unknown`.
   */
  async forget(afterMs: number): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `DELETE FROM workers w
       WHERE status IN ('stopped', 'offline')
         AND updated_at < now() - make_interval(secs => $1::float8 / 1000)
         AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.worker_id = w.id AND q.state IN ('assigning', 'assigned'))
       RETURNING id`,
      [afterMs],
    );
    return rows.map((r) => r.id);
  }

  async countByStatus(): Promise<Record<string, number>> {
    const { rows } = await this.db.query<{ status: string; n: number }>('SELECT status, count(*) AS n FROM workers GROUP BY status');
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /** Slots of each online or draining worker: its capacity and what placed executions use. */
  async slotUsage(): Promise<{ id: string; slots: number; used: number }[]> {
    const { rows } = await this.db.query<WorkerRow>(`${SELECT_WITH_USAGE} WHERE w.status IN ('online', 'draining')`);
    return rows.map((r) => ({ id: r.id, slots: r.slots, used: r.used_slots }));
  }

  /** Seconds since the last heartbeat of every worker that is not stopped. */
  async heartbeatAges(): Promise<{ id: string; age: number }[]> {
    const { rows } = await this.db.query<{ id: string; age: number }>(
      `SELECT id, extract(epoch FROM now() - coalesce(last_heartbeat_at, registered_at))::float8 AS age FROM workers WHERE status <> 'stopped'`,
    );
    return rows;
  }
}
