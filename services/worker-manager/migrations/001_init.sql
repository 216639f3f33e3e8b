-- Worker processes this service started, executions with the job snapshot they run, and their log lines.
CREATE TABLE workers (
  id          uuid PRIMARY KEY,
  type        text NOT NULL,
  name        text,
  status      text NOT NULL,
  pid         integer,
  host        text,
  labels      jsonb NOT NULL DEFAULT '{}',
  capacity    jsonb NOT NULL,
  exit_code   integer,
  signal      text,
  started_at  timestamptz NOT NULL DEFAULT now(),
  stopped_at  timestamptz
);
CREATE INDEX workers_started_at ON workers (started_at DESC);

CREATE TABLE executions (
  id            uuid PRIMARY KEY,
  job_id        uuid,
  name          text NOT NULL,
  worker_id     uuid,
  attempt       integer NOT NULL DEFAULT 1,
  retry_of      uuid,
  status        text NOT NULL,
  priority      integer NOT NULL,
  exit_code     integer,
  signal        text,
  message       text,
  waiting       text,
  progress      jsonb,
  spec          jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  finished_at   timestamptz,
  duration_ms   integer,
  last_seq      integer,
  has_result    boolean NOT NULL DEFAULT false,
  result        jsonb,
  result_error  text
);
CREATE INDEX executions_created_at ON executions (created_at DESC, id DESC);
CREATE INDEX executions_job_id ON executions (job_id, created_at DESC);
CREATE INDEX executions_worker_running ON executions (worker_id) WHERE status = 'running';
CREATE INDEX executions_status ON executions (status);

-- stream: 1 = stdout, 2 = stderr (a smallint keeps a million-line job's rows small).
CREATE TABLE log_lines (
  execution_id uuid NOT NULL,
  seq          integer NOT NULL,
  stream       smallint NOT NULL,
  line         text NOT NULL,
  ts           timestamptz NOT NULL,
  PRIMARY KEY (execution_id, seq)
);
