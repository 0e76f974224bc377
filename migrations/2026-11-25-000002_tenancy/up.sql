-- Tenancy: the tenant registry, the default tenant, and the row-level-security building blocks
-- every tenant-owned table uses. See docs/tenancy.md.

-- Tenant administration (creating tenants, suspending them) is the only write access to the
-- registry. The runtime role can read it, to resolve tenants, and nothing else. Created only
-- when missing: roles are shared by every database of the cluster.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sovereign_tenant_admin') THEN
        CREATE ROLE sovereign_tenant_admin NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO sovereign_tenant_admin;

-- The tenant of the current transaction, set by the application with
-- set_config('app.tenant_id', <uuid>, true); NULL when none is set. Transaction-local settings
-- revert to '' (not NULL) after their transaction, hence NULLIF. Comparing with NULL matches no
-- row, so a query or insert without a tenant fails closed.
CREATE FUNCTION sovereign_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    slug text NOT NULL UNIQUE
        CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name text NOT NULL
        CONSTRAINT tenants_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    status text NOT NULL DEFAULT 'active'
        CONSTRAINT tenants_status_known CHECK (status IN ('active', 'suspended')),
    settings jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT tenants_settings_object CHECK (jsonb_typeof(settings) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The default privileges of the first migration gave the runtime role DML; the registry is
-- read-only to it.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON tenants FROM sovereign_app;
GRANT SELECT, INSERT, UPDATE ON tenants TO sovereign_tenant_admin;

-- With multi-tenancy off, everything lives here.
INSERT INTO tenants (id, slug, name)
VALUES ('00000000-0000-0000-0000-000000000001', 'default', 'Default');

-- Makes a table tenant-owned: ENABLE and FORCE row-level security (FORCE applies it to the
-- table's owner too), and one policy that shows and accepts only rows of the current tenant.
-- The table must have `tenant_id uuid NOT NULL REFERENCES tenants (id)`.
--     CALL sovereign_make_tenant_owned('notes');
CREATE PROCEDURE sovereign_make_tenant_owned(target regclass)
    LANGUAGE plpgsql
    AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s
             USING (tenant_id = sovereign_current_tenant())
             WITH CHECK (tenant_id = sovereign_current_tenant())',
        target
    );
END
$$;
