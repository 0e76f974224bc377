-- Dropping the partitioned table drops every partition with it.
DROP TABLE vector_points;
DROP TABLE vector_collections;
DROP FUNCTION sovereign_vector_index_payload(uuid, text, text);
DROP FUNCTION sovereign_vector_build_index(uuid);
DROP FUNCTION sovereign_vector_analyze(uuid, boolean);
DROP FUNCTION sovereign_vector_collection_dropped();
DROP FUNCTION sovereign_vector_collection_created();
DROP FUNCTION sovereign_vector_partition(uuid);
