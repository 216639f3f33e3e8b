-- When a paused schedule was last resumed: a one-shot resumed after its run_at was missed because
-- it was paused, not because no scheduler was running, and its skipped firing says so.
ALTER TABLE schedules ADD COLUMN resumed_at timestamptz;
