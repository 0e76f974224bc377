ALTER TABLE mfa_challenges DROP COLUMN factor_id, DROP COLUMN purpose;
DROP TABLE auth_policies;
