-- Second factors: TOTP authenticators, recovery codes, the challenge a password sign-in of an
-- account with a factor gets instead of a session, and how each session was authenticated
-- (assurance level, methods, time), which its access tokens carry as `aal`, `amr`, `auth_time`.

ALTER TABLE sessions
    ADD COLUMN aal text NOT NULL DEFAULT 'aal1'
        CONSTRAINT sessions_aal_known CHECK (aal IN ('aal1', 'aal2')),
    ADD COLUMN amr text[] NOT NULL DEFAULT ARRAY['pwd']::text[],
    ADD COLUMN auth_time timestamptz NOT NULL DEFAULT now();

CREATE TABLE mfa_factors (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    kind text NOT NULL CONSTRAINT mfa_factors_kind_known CHECK (kind IN ('totp')),
    name text NOT NULL CONSTRAINT mfa_factors_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    -- The TOTP secret, sealed with AES-256-GCM under a key derived from SECRET_KEY, bound to `id`.
    secret bytea NOT NULL,
    confirmed_at timestamptz,
    -- The last time step whose code was accepted: that code, and any earlier one, is refused.
    last_step bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mfa_factors_tenant_id_key UNIQUE (tenant_id, id),
    CONSTRAINT mfa_factors_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mfa_factors_user_idx ON mfa_factors (tenant_id, user_id);
CALL sovereign_make_tenant_owned('mfa_factors');

CREATE TABLE recovery_codes (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    -- HMAC-SHA256 of the code under a key derived from SECRET_KEY: useless without the key.
    code_hash bytea NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id, code_hash),
    CONSTRAINT recovery_codes_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CALL sovereign_make_tenant_owned('recovery_codes');

CREATE TABLE mfa_challenges (
    token_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    -- How the first factor was proven (`pwd`).
    amr text[] NOT NULL,
    user_agent text NOT NULL DEFAULT '',
    ip text,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT mfa_challenges_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mfa_challenges_expiry_idx ON mfa_challenges (expires_at);
CALL sovereign_make_tenant_owned('mfa_challenges');
