DROP TABLE provider_grants;
DROP TABLE provider_flows;
DROP TABLE user_identities;
DROP TABLE auth_redirect_urls;
DROP TABLE auth_providers;
-- Accounts made through a provider have no password; they cannot survive the constraint.
DELETE FROM users WHERE password_hash IS NULL;
ALTER TABLE users ALTER COLUMN password_hash SET NOT NULL;
