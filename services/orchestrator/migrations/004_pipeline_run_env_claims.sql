-- Run parameters every job of the run receives, and when a job's start was claimed: a claim that
-- never recorded its execution (the orchestrator stopped mid-start) is taken over once stale.
-- The claim itself is the row (run_id, job_id) moving to 'starting' under the run's row lock.
ALTER TABLE pipeline_runs ADD COLUMN env jsonb NOT NULL DEFAULT '{}';
ALTER TABLE pipeline_run_jobs ADD COLUMN starting_at timestamptz;
CREATE INDEX pipeline_run_jobs_starting_idx ON pipeline_run_jobs (starting_at) WHERE status = 'starting';
CREATE INDEX pipeline_runs_running_idx ON pipeline_runs (id) WHERE status = 'running';
