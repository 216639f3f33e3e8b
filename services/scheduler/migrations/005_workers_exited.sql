-- When worker-manager reported the worker's process gone: that id never comes back, so the worker
-- can be forgotten; a worker that merely fell silent may still beat again.
ALTER TABLE workers ADD COLUMN exited_at timestamptz;
