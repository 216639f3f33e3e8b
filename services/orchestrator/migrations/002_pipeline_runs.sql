-- A pipeline run starts every job of a pipeline in dependency order; each job's row holds the
-- execution worker-manager created for it.
CREATE TABLE pipeline_runs (
  id          uuid PRIMARY KEY,
  pipeline_id uuid NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
  status      text NOT NULL DEFAULT 'running',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX pipeline_runs_pipeline_idx ON pipeline_runs (pipeline_id, id DESC);

CREATE TABLE pipeline_run_jobs (
  run_id       uuid NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
  position     integer NOT NULL,
  job_id       uuid NOT NULL,
  name         text NOT NULL,
  depends_on   uuid[] NOT NULL DEFAULT '{}',
  status       text NOT NULL DEFAULT 'waiting',
  execution_id uuid,
  message      text,
  PRIMARY KEY (run_id, job_id)
);
CREATE INDEX pipeline_run_jobs_execution_idx ON pipeline_run_jobs (execution_id);
