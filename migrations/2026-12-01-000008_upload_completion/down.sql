ALTER TABLE storage_uploads DROP COLUMN completing_until;
