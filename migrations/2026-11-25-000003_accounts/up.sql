-- Accounts: users, sessions with rotating refresh tokens, single-use action tokens (password
-- reset, email verification) and API keys. Every table is tenant-owned (row-level security,
-- forced), and every reference to another account table carries the tenant, so a row can only
-- point at rows of its own tenant. Secrets are stored only as SHA-256 digests.

CREATE TABLE users (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Stored lower-cased and trimmed, so uniqueness is case-insensitive.
    email text NOT NULL
        CONSTRAINT users_email_format CHECK (char_length(email) BETWEEN 3 AND 254 AND email = lower(email)),
    full_name text NOT NULL DEFAULT ''
        CONSTRAINT users_full_name_length CHECK (char_length(full_name) <= 200),
    password_hash text NOT NULL,
    role text NOT NULL DEFAULT 'user'
        CONSTRAINT users_role_known CHECK (role IN ('user', 'admin', 'superadmin')),
    is_active boolean NOT NULL DEFAULT true,
    email_verified boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT users_tenant_id_key UNIQUE (tenant_id, id)
);
-- One live account per address and tenant; a soft-deleted account frees its address.
CREATE UNIQUE INDEX users_tenant_email_key ON users (tenant_id, email) WHERE deleted_at IS NULL;
CREATE INDEX users_tenant_created_idx ON users (tenant_id, created_at);
CALL sovereign_make_tenant_owned('users');

-- One row per sign-in. Access tokens name their session (`sid`); a revoked session stops them.
CREATE TABLE sessions (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    user_agent text NOT NULL DEFAULT ''
        CONSTRAINT sessions_user_agent_length CHECK (char_length(user_agent) <= 512),
    ip text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text,
    CONSTRAINT sessions_tenant_id_key UNIQUE (tenant_id, id),
    CONSTRAINT sessions_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_live_idx ON sessions (user_id) WHERE revoked_at IS NULL;
CALL sovereign_make_tenant_owned('sessions');

-- Every refresh token a session was given. Exactly one is unspent while the session lives;
-- presenting a spent one is a replay and revokes the session.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY
        CONSTRAINT refresh_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    spent_at timestamptz,
    CONSTRAINT refresh_tokens_session_fkey FOREIGN KEY (tenant_id, session_id)
        REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CALL sovereign_make_tenant_owned('refresh_tokens');

-- Single-use, expiring tokens sent by mail.
CREATE TABLE action_tokens (
    token_hash bytea PRIMARY KEY
        CONSTRAINT action_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    purpose text NOT NULL
        CONSTRAINT action_tokens_purpose_known CHECK (purpose IN ('password_reset', 'email_verification')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    CONSTRAINT action_tokens_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX action_tokens_user_idx ON action_tokens (user_id, purpose);
CALL sovereign_make_tenant_owned('action_tokens');

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    name text NOT NULL
        CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    -- The first characters of the key, shown in listings so people can tell keys apart.
    prefix text NOT NULL,
    key_hash bytea NOT NULL UNIQUE
        CONSTRAINT api_keys_hash_length CHECK (octet_length(key_hash) = 32),
    role text NOT NULL
        CONSTRAINT api_keys_role_known CHECK (role IN ('user', 'admin', 'superadmin')),
    scopes text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT api_keys_tenant_id_key UNIQUE (tenant_id, id),
    CONSTRAINT api_keys_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);
CALL sovereign_make_tenant_owned('api_keys');

-- Tenant administration may delete a tenant; its accounts go with it (ON DELETE CASCADE above).
GRANT DELETE ON tenants TO sovereign_tenant_admin;
