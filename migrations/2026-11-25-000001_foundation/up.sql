-- Foundation: the pgvector extension and the runtime role model.
--
-- Migrations run as the schema owner. The server connects as a login role that is a member of
-- the group role `sovereign_app`: not the owner, not a superuser, not BYPASSRLS, so row-level
-- security always applies to it. docs/operations.md shows how an operator creates both roles.

-- pgvector, for sovereign-vector. Creating it needs a superuser unless an operator has already
-- done so (then this is a no-op).
CREATE EXTENSION IF NOT EXISTS vector;

-- Roles are shared by every database of a cluster, so create the group role only when missing.
-- An owner without CREATEROLE can still migrate once an operator has created it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sovereign_app') THEN
        CREATE ROLE sovereign_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;

-- The runtime role may use the schema but not create objects in it: PostgreSQL 15 and later
-- grant CREATE on `public` to nobody but its owner.
GRANT USAGE ON SCHEMA public TO sovereign_app;

-- Every table and sequence the owner creates from now on is usable, not ownable, by the
-- runtime role. Row-level security policies decide which rows.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sovereign_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO sovereign_app;
