-- The transaction that last changed a run job's status or execution: a run's event stream gives
-- its events ids (the xmin of the snapshot they were read in) and, when a client reconnects with
-- Last-Event-ID, sends again the jobs changed by that transaction or any later one.
ALTER TABLE pipeline_run_jobs ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE FUNCTION pipeline_run_jobs_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.changed_xid := pg_current_xact_id();
  RETURN NEW;
END
$$;

CREATE TRIGGER pipeline_run_jobs_changed BEFORE UPDATE ON pipeline_run_jobs FOR EACH ROW
  WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.execution_id IS DISTINCT FROM NEW.execution_id)
  EXECUTE FUNCTION pipeline_run_jobs_changed();
