-- Retries: a failed or lost execution whose spec allows it gets a new attempt (a new row, retry_of =
-- the one before). The new row waits in `queued` with `retry_due_at` set until its back-off is
-- over; then it is announced to the scheduler and `retry_due_at` goes back to NULL. The unique
-- index makes the retry of one execution happen once, whatever delivers the final status twice.
ALTER TABLE executions ADD COLUMN retry_due_at timestamptz;
ALTER TABLE executions ADD COLUMN avoid_workers uuid[] NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX executions_retry_of ON executions (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX executions_retry_due ON executions (retry_due_at) WHERE retry_due_at IS NOT NULL;
