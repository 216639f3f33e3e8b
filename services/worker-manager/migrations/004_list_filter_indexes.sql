-- GET /api/v1/executions?worker_id= had no index to go by, and ?status= and ?job_id= none in the
-- list's order: with 1,000,000 executions a worker's page and its X-Total-Count read the whole
-- table, and an offset read (and computed the columns of) every row it skipped. Each filter now has
-- an index in the list's order holding the ids a page is made of (and the status, so that a
-- second filter on it is answered from the index too): counts and offsets walk index entries only.
CREATE INDEX executions_worker_created ON executions (worker_id, created_at DESC, id DESC) INCLUDE (status);
CREATE INDEX executions_job_created ON executions (job_id, created_at DESC, id DESC) INCLUDE (status);
CREATE INDEX executions_status_created ON executions (status, created_at DESC, id DESC);
DROP INDEX executions_status;
DROP INDEX executions_job_id;
