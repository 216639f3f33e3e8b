-- A job's DELETE and cleanup look for running runs that have yet to run it.
CREATE INDEX pipeline_run_jobs_job_idx ON pipeline_run_jobs (job_id);
