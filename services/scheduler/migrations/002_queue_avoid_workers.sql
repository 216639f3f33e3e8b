-- A retried execution carries the workers its earlier attempts ran on: placement prefers others.
ALTER TABLE queue ADD COLUMN avoid_workers uuid[] NOT NULL DEFAULT '{}';
