-- A job of a run whose start worker-manager surely did not take (connection refused, or a 503: it
-- is restarting, or its NATS is away) stays 'starting' and is tried again by the sweep: since when
-- it has been unavailable bounds that wait (HODEI_PIPELINE_START_WAIT_MS). Its starting_at is
-- cleared meanwhile (nobody holds the claim), and its message says why it waits; a change of the
-- message alone now counts as a change for the run's event stream, so a client resuming it hears why.
ALTER TABLE pipeline_run_jobs ADD COLUMN start_unavailable_since timestamptz;

DROP TRIGGER pipeline_run_jobs_changed ON pipeline_run_jobs;
CREATE TRIGGER pipeline_run_jobs_changed BEFORE UPDATE ON pipeline_run_jobs FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.execution_id IS DISTINCT FROM NEW.execution_id OR OLD.message IS DISTINCT FROM NEW.message)
  EXECUTE FUNCTION pipeline_run_jobs_changed();
