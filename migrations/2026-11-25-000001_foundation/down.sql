ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE USAGE, SELECT ON SEQUENCES FROM sovereign_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM sovereign_app;
REVOKE USAGE ON SCHEMA public FROM sovereign_app;

DROP EXTENSION IF EXISTS vector;

-- The group role `sovereign_app` is a cluster-wide object that other databases of the cluster
-- may use, so it stays. Once no database needs it: DROP ROLE sovereign_app;
