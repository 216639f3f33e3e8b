-- The execution a retry repeats (from worker-manager's events): a pipeline run follows its own
-- job's retries by this chain, never another run's execution of the same job.
ALTER TABLE job_executions ADD COLUMN retry_of uuid;
CREATE INDEX job_executions_retry_of ON job_executions (retry_of) WHERE retry_of IS NOT NULL;
