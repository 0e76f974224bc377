REVOKE DELETE ON tenants FROM sovereign_tenant_admin;
DROP TABLE api_keys;
DROP TABLE action_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
