-- Pipelines, job definitions with their current status, and the executions the orchestrator has
-- heard of (from worker-manager's events): enough to know each job's latest run.
CREATE TABLE pipelines (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  description text,
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipelines_name_idx ON pipelines (name);

CREATE TABLE jobs (
  id                    uuid PRIMARY KEY,
  name                  text NOT NULL,
  description           text,
  pipeline_id           uuid REFERENCES pipelines (id) ON DELETE CASCADE,
  command               text,
  script                text,
  args                  jsonb NOT NULL DEFAULT '[]',
  env                   jsonb NOT NULL DEFAULT '{}',
  working_dir           text,
  timeout_seconds       integer,
  priority              integer NOT NULL DEFAULT 5,
  resources             jsonb NOT NULL DEFAULT '{}',
  tags                  text[] NOT NULL DEFAULT '{}',
  labels                jsonb NOT NULL DEFAULT '{}',
  max_retries           integer NOT NULL DEFAULT 0,
  retry_backoff_seconds integer NOT NULL DEFAULT 10,
  depends_on            uuid[] NOT NULL DEFAULT '{}',
  status                text NOT NULL DEFAULT 'pending',
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_pipeline_idx ON jobs (pipeline_id);
CREATE INDEX jobs_status_idx ON jobs (status, updated_at);
CREATE INDEX jobs_tags_idx ON jobs USING gin (tags);
CREATE INDEX jobs_name_idx ON jobs (name);

CREATE TABLE job_executions (
  execution_id uuid PRIMARY KEY,
  job_id       uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  status       text NOT NULL,
  exit_code    integer,
  started_at   timestamptz,
  finished_at  timestamptz,
  duration_ms  bigint,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_executions_job_idx ON job_executions (job_id, execution_id DESC);
