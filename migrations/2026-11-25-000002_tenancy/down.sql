DROP PROCEDURE IF EXISTS sovereign_make_tenant_owned(regclass);
DROP TABLE IF EXISTS tenants;
DROP FUNCTION IF EXISTS sovereign_current_tenant();
REVOKE USAGE ON SCHEMA public FROM sovereign_tenant_admin;

-- The group role `sovereign_tenant_admin` is cluster-wide and stays, like `sovereign_app`.
-- Once no database needs it: DROP ROLE sovereign_tenant_admin;
