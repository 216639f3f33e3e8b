-- Schedules and their firings, the worker registry, and the queue of executions waiting for a worker.

CREATE TABLE schedules (
  id             uuid PRIMARY KEY,
  name           text,
  job_id         uuid,
  pipeline_id    uuid,
  cron           text,
  run_at         timestamptz,
  timezone       text NOT NULL DEFAULT 'UTC',
  enabled        boolean NOT NULL DEFAULT true,
  completed      boolean NOT NULL DEFAULT false,
  overlap_policy text NOT NULL DEFAULT 'forbid',
  misfire_policy text NOT NULL DEFAULT 'run_once',
  next_run_at    timestamptz,
  last_run_at    timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CHECK ((job_id IS NULL) <> (pipeline_id IS NULL)),
  CHECK ((cron IS NULL) <> (run_at IS NULL))
);
CREATE INDEX schedules_job ON schedules (job_id);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled AND NOT completed;

-- One row per firing: the unique pair is what keeps two replicas from firing the same second twice.
CREATE TABLE schedule_runs (
  id           uuid PRIMARY KEY,
  schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
  scheduled_at timestamptz NOT NULL,
  fired_at     timestamptz,
  execution_id uuid,
  outcome      text NOT NULL DEFAULT 'pending',
  message      text,
  UNIQUE (schedule_id, scheduled_at)
);

CREATE TABLE workers (
  id                uuid PRIMARY KEY,
  type              text NOT NULL,
  name              text,
  status            text NOT NULL,
  labels            jsonb NOT NULL DEFAULT '{}',
  slots             integer NOT NULL,
  cpu_cores         double precision NOT NULL,
  memory_bytes      bigint NOT NULL,
  host              text,
  pid               integer,
  registered_at     timestamptz NOT NULL DEFAULT now(),
  last_heartbeat_at timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_status ON workers (status);

-- state: waiting (no worker yet) → assigning (claimed, request in flight) → assigned (worker acked)
-- → done (finished or cancelled). A `done` row also stands as a tombstone, so a queued event
-- that arrives after its own cancel/finished event is ignored.
CREATE TABLE queue (
  execution_id   uuid PRIMARY KEY,
  job_id         uuid,
  priority       integer NOT NULL,
  attempt        integer NOT NULL,
  spec           jsonb NOT NULL,
  traceparent    text,
  created_at     timestamptz NOT NULL,
  enqueued_at    timestamptz NOT NULL DEFAULT now(),
  state          text NOT NULL DEFAULT 'waiting',
  worker_id      uuid,
  cpu_cores      double precision NOT NULL,
  memory_bytes   bigint NOT NULL,
  claimed_at     timestamptz,
  waiting_reason text,
  done_at        timestamptz
);
CREATE INDEX queue_waiting ON queue (priority DESC, created_at, execution_id) WHERE state = 'waiting';
CREATE INDEX queue_worker ON queue (worker_id) WHERE state IN ('assigning', 'assigned');
CREATE INDEX queue_done ON queue (done_at) WHERE state = 'done';
