-- Passkeys (WebAuthn discoverable credentials) and the ceremonies in flight.

CREATE TABLE passkeys (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    name text NOT NULL CONSTRAINT passkeys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    -- The authenticator's credential id, to find the passkey a sign-in presents.
    credential_id bytea NOT NULL,
    -- The public key, its algorithm and the signature counter, as webauthn-rs keeps them.
    credential jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    CONSTRAINT passkeys_credential_key UNIQUE (tenant_id, credential_id),
    CONSTRAINT passkeys_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX passkeys_user_idx ON passkeys (tenant_id, user_id);
CALL sovereign_make_tenant_owned('passkeys');

-- A registration, sign-in or re-authentication in flight: its challenge and expectations,
-- keyed by a digest of the token handed to the client. Spent (deleted) by the first answer.
CREATE TABLE passkey_ceremonies (
    token_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    purpose text NOT NULL CONSTRAINT passkey_ceremonies_purpose_known CHECK (purpose IN ('register', 'sign_in', 'reauthenticate')),
    -- The account registering or re-authenticating; none for a sign-in.
    user_id uuid,
    session_id uuid,
    name text,
    state jsonb NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX passkey_ceremonies_expiry_idx ON passkey_ceremonies (expires_at);
CALL sovereign_make_tenant_owned('passkey_ceremonies');
