-- A tenant's second-factor policy, and sign-in challenges that enrol a first factor.

CREATE TABLE auth_policies (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Who must sign in at `aal2`: nobody, administrators (and superadministrators), everyone.
    require_aal2 text NOT NULL DEFAULT 'none'
        CONSTRAINT auth_policies_require_aal2_known CHECK (require_aal2 IN ('none', 'admins', 'everyone')),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CALL sovereign_make_tenant_owned('auth_policies');

-- `verify`: completed with an existing factor. `enrol`: the account has none and the policy
-- requires one; completed by enrolling a TOTP authenticator.
ALTER TABLE mfa_challenges
    ADD COLUMN purpose text NOT NULL DEFAULT 'verify'
        CONSTRAINT mfa_challenges_purpose_known CHECK (purpose IN ('verify', 'enrol')),
    -- The authenticator being enrolled through an `enrol` challenge.
    ADD COLUMN factor_id uuid;
