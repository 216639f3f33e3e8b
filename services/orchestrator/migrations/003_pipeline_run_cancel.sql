-- A cancelled run starts nothing more; its waiting jobs end as skipped.
ALTER TABLE pipeline_runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
