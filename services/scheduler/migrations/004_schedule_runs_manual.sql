-- Firings asked for with POST /api/v1/schedules/:id/run: at any instant, so one landing on the
-- second of a cron firing must not take that firing's place. Only the schedule's own firings are
-- unique per (schedule, second).
ALTER TABLE schedule_runs ADD COLUMN manual boolean NOT NULL DEFAULT false;
ALTER TABLE schedule_runs DROP CONSTRAINT schedule_runs_schedule_id_scheduled_at_key;
CREATE UNIQUE INDEX schedule_runs_firing ON schedule_runs (schedule_id, scheduled_at) WHERE NOT manual;
CREATE INDEX schedule_runs_schedule ON schedule_runs (schedule_id, scheduled_at);
