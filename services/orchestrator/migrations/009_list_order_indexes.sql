-- GET /api/v1/jobs and /api/v1/pipelines page newest first: without an index in that order each
-- page read and sorted every row (with 100,000 jobs, on disk), and took each job's last execution first.
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, id DESC);
CREATE INDEX pipelines_created_idx ON pipelines (created_at DESC, id DESC);
