-- A pipeline's dependencies and runs name its jobs, so two jobs of one pipeline may not share a
-- name. Jobs that already do keep the name on the oldest one; the others get their id's last 8
-- characters appended (as a job created without a name is called job-<8>), so the index can exist.
UPDATE jobs j SET name = j.name || '-' || right(j.id::text, 8), updated_at = now()
WHERE j.pipeline_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM jobs o WHERE o.pipeline_id = j.pipeline_id AND o.name = j.name AND o.id < j.id);
CREATE UNIQUE INDEX jobs_pipeline_name_key ON jobs (pipeline_id, name);
