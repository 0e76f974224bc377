DROP TABLE storage_blobs;
DROP TABLE storage_usage;
DROP TABLE storage_objects;
DROP TABLE storage_buckets;
