-- One completion of a direct upload at a time: `complete` claims the upload until this time
-- (a completion that dies leaves a claim that lapses).
ALTER TABLE storage_uploads ADD COLUMN completing_until timestamptz;
