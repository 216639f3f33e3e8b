// SQL for schedules and their firings.
import { iso, newId, withTransaction, type Pool } from '@hodei/platform';
import type { Schedule, ScheduleRun } from '@hodei/types';

interface ScheduleRow {
  id: string;
  name: string | null;
  job_id: string | null;
  pipeline_id: string | null;
  cron: string | null;
  run_at: Date | null;
  timezone: string;
  enabled: boolean;
  completed: boolean;
  overlap_policy: Schedule['overlap_policy'];
  misfire_policy: Schedule['misfire_policy'];
  next_run_at: Date | null;
  last_run_at: Date | null;
  resumed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

function toSchedule(r: ScheduleRow): Schedule {
  return {
    id: r.id,
    name: r.name,
    job_id: r.job_id,
    pipeline_id: r.pipeline_id,
    cron: r.cron,
    run_at: iso(r.run_at),
    timezone: r.timezone,
    enabled: r.enabled,
    status: r.completed ? 'completed' : r.enabled ? 'scheduled' : 'paused',
    overlap_policy: r.overlap_policy,
    misfire_policy: r.misfire_policy,
    next_run_at: iso(r.next_run_at),
    last_run_at: iso(r.last_run_at),
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
  };
}

interface RunRow {
  id: string;
  schedule_id: string;
  scheduled_at: Date;
  fired_at: Date | null;
  execution_id: string | null;
  pipeline_run_id: string | null;
  outcome: ScheduleRun['outcome'];
  message: string | null;
  manual: boolean;
}

function toRun(r: RunRow): ScheduleRun {
  return {
    id: r.id,
    schedule_id: r.schedule_id,
    scheduled_at: iso(r.scheduled_at)!,
    fired_at: iso(r.fired_at),
    execution_id: r.execution_id,
    pipeline_run_id: r.pipeline_run_id,
    outcome: r.outcome,
    message: r.message,
    manual: r.manual,
  };
}

export interface ScheduleValues {
  name: string | null;
  job_id: string | null;
  pipeline_id: string | null;
  cron: string | null;
  run_at: Date | null;
  timezone: string;
  enabled: boolean;
  overlap_policy: Schedule['overlap_policy'];
  misfire_policy: Schedule['misfire_policy'];
  next_run_at: Date | null;
}

export type StoredValues = ScheduleValues & { completed: boolean };

function toValues(r: ScheduleRow): StoredValues {
  return {
    name: r.name,
    job_id: r.job_id,
    pipeline_id: r.pipeline_id,
    cron: r.cron,
    run_at: r.run_at,
    timezone: r.timezone,
    enabled: r.enabled,
    overlap_policy: r.overlap_policy,
    misfire_policy: r.misfire_policy,
    next_run_at: r.next_run_at,
    completed: r.completed,
  };
}

export class ScheduleStore {
  constructor(private readonly db: Pool) {}

  async create(v: ScheduleValues): Promise<Schedule> {
    const { rows } = await this.db.query<ScheduleRow>(
      `INSERT INTO schedules (id, name, job_id, pipeline_id, cron, run_at, timezone, enabled, overlap_policy, misfire_policy, next_run_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
      [newId(), v.name, v.job_id, v.pipeline_id, v.cron, v.run_at, v.timezone, v.enabled, v.overlap_policy, v.misfire_policy, v.next_run_at],
    );
    return toSchedule(rows[0]!);
  }

  async get(id: string): Promise<Schedule | null> {
    const { rows } = await this.db.query<ScheduleRow>('SELECT * FROM schedules WHERE id = $1', [id]);
    return rows[0] ? toSchedule(rows[0]) : null;
  }

  /** The stored values. */
  async values(id: string): Promise<StoredValues | null> {
    const { rows } = await this.db.query<ScheduleRow>('SELECT * FROM schedules WHERE id = $1', [id]);
    return rows[0] ? toValues(rows[0]) : null;
  }

  /**
   * A PATCH: `change` merges into the stored values, locked until the result is written, so that
   * edits at the same moment each build on the one before (none undoes another). Null when there is
   * no such schedule; what `change` throws leaves the schedule as it was.
   */
  async edit(id: string, change: (cur: StoredValues) => StoredValues): Promise<Schedule | null> {
    return withTransaction(this.db, async (c) => {
      const { rows } = await c.query<ScheduleRow>('SELECT * FROM schedules WHERE id = $1 FOR UPDATE', [id]);
      if (!rows[0]) return null;
      const v = change(toValues(rows[0]));
      const updated = await c.query<ScheduleRow>(
        `UPDATE schedules SET name = $2, cron = $3, run_at = $4, timezone = $5, enabled = $6, overlap_policy = $7,
           misfire_policy = $8, next_run_at = $9, completed = $10, updated_at = now(),
           resumed_at = CASE WHEN $6 AND NOT enabled THEN now() ELSE resumed_at END
         WHERE id = $1 RETURNING *`,
        [id, v.name, v.cron, v.run_at, v.timezone, v.enabled, v.overlap_policy, v.misfire_policy, v.next_run_at, v.completed],
      );
      return toSchedule(updated.rows[0]!);
    });
  }

  async pause(id: string): Promise<void> {
    await this.db.query('UPDATE schedules SET enabled = false, next_run_at = NULL, updated_at = now() WHERE id = $1', [id]);
  }

  async delete(id: string): Promise<boolean> {
    const { rowCount } = await this.db.query('DELETE FROM schedules WHERE id = $1', [id]);
    return (rowCount ?? 0) > 0;
  }

  async list(f: { job_id?: string | undefined; pipeline_id?: string | undefined; enabled?: boolean | undefined; limit: number; offset: number }): Promise<{ items: Schedule[]; total: number }> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.job_id !== undefined) where.push(`job_id = $${args.push(f.job_id)}`);
    if (f.pipeline_id !== undefined) where.push(`pipeline_id = $${args.push(f.pipeline_id)}`);
    if (f.enabled !== undefined) where.push(`enabled = $${args.push(f.enabled)}`);
    const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
    // the total apart: count(*) OVER () made every page read, and hold, all the rows before the first
    const count = await this.db.query<{ n: number }>(`SELECT count(*) AS n FROM schedules ${w}`, args);
    const { rows } = await this.db.query<ScheduleRow>(
      `SELECT * FROM schedules ${w} ORDER BY created_at DESC, id DESC LIMIT $${args.push(f.limit)} OFFSET $${args.push(f.offset)}`,
      args,
    );
    return { items: rows.map(toSchedule), total: count.rows[0]?.n ?? 0 };
  }

  async runs(scheduleId: string, limit: number, offset: number): Promise<{ items: ScheduleRun[]; total: number }> {
    const count = await this.db.query<{ n: number }>('SELECT count(*) AS n FROM schedule_runs WHERE schedule_id = $1', [scheduleId]);
    const { rows } = await this.db.query<RunRow>(
      'SELECT * FROM schedule_runs WHERE schedule_id = $1 ORDER BY scheduled_at DESC LIMIT $2 OFFSET $3',
      [scheduleId, limit, offset],
    );
    return { items: rows.map(toRun), total: count.rows[0]?.n ?? 0 };
  }

  // ---- firing ----

  /** Enabled schedules due at `now`, oldest first, but those of `except`. */
  async due(now: Date, except: string[] = [], limit = 500): Promise<DueSchedule[]> {
    const { rows } = await this.db.query<ScheduleRow>(
      `SELECT * FROM schedules WHERE enabled AND NOT completed AND next_run_at <= $1 AND id <> ALL($2::uuid[])
       ORDER BY next_run_at LIMIT $3`,
      [now, except, limit],
    );
    return rows.map((r) => ({
      id: r.id,
      job_id: r.job_id,
      pipeline_id: r.pipeline_id,
      cron: r.cron,
      timezone: r.timezone,
      overlap_policy: r.overlap_policy,
      misfire_policy: r.misfire_policy,
      next_run_at: r.next_run_at!,
      resumed_at: r.resumed_at,
    }));
  }

  /** When the next enabled schedule (but those of `except`) is due, if any. */
  async earliest(except: string[] = []): Promise<Date | null> {
    const { rows } = await this.db.query<{ at: Date | null }>(
      `SELECT min(next_run_at) AS at FROM schedules WHERE enabled AND NOT completed AND id <> ALL($1::uuid[])`,
      [except],
    );
    return rows[0]?.at ?? null;
  }

  /**
   * Records the firing of (schedule, scheduled_at). Only one caller ever gets `true` for a pair
   * (unique constraint): that caller, and only it, starts the execution.
   */
  async claimRun(scheduleId: string, scheduledAt: Date): Promise<string | null> {
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO schedule_runs (id, schedule_id, scheduled_at, fired_at) VALUES ($1, $2, $3, clock_timestamp())
       ON CONFLICT (schedule_id, scheduled_at) WHERE NOT manual DO NOTHING RETURNING id`,
      [newId(), scheduleId, scheduledAt],
    );
    return rows[0]?.id ?? null;
  }

  /** Records a firing asked for now (it is the schedule's last run); its time is its own, never a cron firing's. */
  async claimManualRun(scheduleId: string): Promise<{ id: string; scheduled_at: Date }> {
    const { rows } = await this.db.query<{ id: string; scheduled_at: Date }>(
      `WITH run AS (
         INSERT INTO schedule_runs (id, schedule_id, scheduled_at, fired_at, manual)
         VALUES ($1, $2, clock_timestamp(), clock_timestamp(), true) RETURNING id, schedule_id, scheduled_at
       ), touched AS (
         UPDATE schedules s SET last_run_at = greatest(s.last_run_at, run.scheduled_at), updated_at = now() FROM run WHERE s.id = run.schedule_id
       )
       SELECT id, scheduled_at FROM run`,
      [newId(), scheduleId],
    );
    return rows[0]!;
  }

  async run(runId: string): Promise<ScheduleRun | null> {
    const { rows } = await this.db.query<RunRow>('SELECT * FROM schedule_runs WHERE id = $1', [runId]);
    return rows[0] ? toRun(rows[0]) : null;
  }

  /**
   * Moves a schedule past a firing, unless another replica (or an edit, a pause) moved it already.
   * `lastRunAt`, given only by the one caller that claimed the run, is recorded either way: a run
   * fired while the schedule was being paused is still its last run.
   */
  async advance(id: string, from: Date, next: Date | null, lastRunAt: Date | null): Promise<void> {
    await this.db.query(
      `UPDATE schedules SET
         next_run_at = CASE WHEN next_run_at = $2 THEN $3 ELSE next_run_at END,
         completed = CASE WHEN next_run_at = $2 THEN (cron IS NULL AND $3::timestamptz IS NULL) ELSE completed END,
         last_run_at = greatest(last_run_at, $4), updated_at = now()
       WHERE id = $1 AND (next_run_at = $2 OR $4::timestamptz IS NOT NULL)`,
      [id, from, next, lastRunAt],
    );
  }

  async finishRun(
    runId: string,
    outcome: ScheduleRun['outcome'],
    started: { execution_id: string | null; pipeline_run_id: string | null },
    message: string | null,
  ): Promise<void> {
    await this.db.query(
      `UPDATE schedule_runs SET outcome = $2, execution_id = $3, pipeline_run_id = $4, message = $5,
         fired_at = CASE WHEN $2 = 'skipped' THEN NULL ELSE fired_at END
       WHERE id = $1`,
      [runId, outcome, started.execution_id, started.pipeline_run_id, message],
    );
  }

  /**
   * The execution the latest firing started, and whether it is over here (the queue's `done` rows,
   * kept 8 days; no execution runs longer than 7). An execution over may still be retried, unless
   * it was its job's last attempt (`last_attempt`: its attempt is over its spec's max_retries).
   */
  async lastExecution(scheduleId: string): Promise<{ execution_id: string; done: boolean; last_attempt: boolean } | null> {
    const { rows } = await this.db.query<{ execution_id: string; done: boolean; last_attempt: boolean }>(
      `SELECT r.execution_id, coalesce(q.state = 'done', false) AS done,
              coalesce(q.state = 'done' AND q.attempt > (q.spec->>'max_retries')::int, false) AS last_attempt
       FROM schedule_runs r LEFT JOIN queue q ON q.execution_id = r.execution_id
       WHERE r.schedule_id = $1 AND r.execution_id IS NOT NULL AND r.fired_at > now() - interval '8 days'
       ORDER BY r.scheduled_at DESC LIMIT 1`,
      [scheduleId],
    );
    return rows[0] ?? null;
  }

  /** Deletes the firings of more than `days` ago but each schedule's newest, and its newest that
   *  started a pipeline run (lastPipelineRun); returns how many went. */
  async pruneRuns(days: number): Promise<number> {
    const { rowCount } = await this.db.query(
      `DELETE FROM schedule_runs r WHERE r.scheduled_at < now() - make_interval(days => $1) AND r.outcome <> 'pending'
         AND EXISTS (SELECT 1 FROM schedule_runs n WHERE n.schedule_id = r.schedule_id AND n.scheduled_at > r.scheduled_at
                       AND (r.pipeline_run_id IS NULL OR n.pipeline_run_id IS NOT NULL))`,
      [days],
    );
    return rowCount ?? 0;
  }

  /** The pipeline run the latest firing started, if any; whether it still runs is the orchestrator's to say. */
  async lastPipelineRun(scheduleId: string): Promise<string | null> {
    const { rows } = await this.db.query<{ pipeline_run_id: string }>(
      `SELECT pipeline_run_id FROM schedule_runs WHERE schedule_id = $1 AND pipeline_run_id IS NOT NULL
       ORDER BY scheduled_at DESC LIMIT 1`,
      [scheduleId],
    );
    return rows[0]?.pipeline_run_id ?? null;
  }
}

export interface DueSchedule {
  id: string;
  job_id: string | null;
  pipeline_id: string | null;
  cron: string | null;
  timezone: string;
  overlap_policy: Schedule['overlap_policy'];
  misfire_policy: Schedule['misfire_policy'];
  next_run_at: Date;
  /** Last time a PATCH resumed it: after next_run_at, the firing was missed because it was paused. */
  resumed_at: Date | null;
}
