DROP TABLE storage_uploads;
