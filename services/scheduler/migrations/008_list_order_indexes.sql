-- GET /api/v1/schedules and /api/v1/workers page newest first: without an index in that order each
-- page read and sorted every row; schedules of a pipeline were found by reading them all.
CREATE INDEX schedules_created ON schedules (created_at DESC, id DESC);
CREATE INDEX schedules_pipeline ON schedules (pipeline_id);
CREATE INDEX workers_registered ON workers (registered_at DESC, id DESC);
