DROP TABLE events;
DROP FUNCTION sovereign_events_inserted();
DROP FUNCTION sovereign_audit_partitions(integer);
DROP FUNCTION sovereign_audit_prune(timestamptz);
DROP TABLE audit_log;
DROP PROCEDURE sovereign_audit_seal(regclass);
