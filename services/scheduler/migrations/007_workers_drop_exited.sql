-- Workers are forgotten when stopped or offline, whatever took them offline: when a worker's
-- process exited is no longer needed.
ALTER TABLE workers DROP COLUMN exited_at;
