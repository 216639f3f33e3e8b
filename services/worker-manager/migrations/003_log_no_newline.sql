-- A stream's last line that the job ended without a newline (`printf hi`): true; NULL on every
-- other line, so the column costs nothing on the rows of ordinary lines.
ALTER TABLE log_lines ADD COLUMN no_newline boolean;
