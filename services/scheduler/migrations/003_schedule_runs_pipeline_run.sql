-- The pipeline run a firing of a pipeline schedule started: overlap_policy looks at it.
ALTER TABLE schedule_runs ADD COLUMN pipeline_run_id uuid;
