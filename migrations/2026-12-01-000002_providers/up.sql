-- Sign-in with OpenID Connect and OAuth 2.0 providers: each tenant's providers, the redirect
-- targets its apps may be sent back to, the external identities linked to accounts, the
-- authorization requests in flight and the one-time codes an app exchanges for a session.

-- An account made by signing in with a provider has no password until its owner sets one.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

CREATE TABLE auth_providers (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- In URLs: /api/v1/auth/providers/{slug}/authorize.
    slug text NOT NULL
        CONSTRAINT auth_providers_slug_format CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$'),
    kind text NOT NULL CONSTRAINT auth_providers_kind_known CHECK (kind IN ('oidc', 'google', 'github')),
    name text NOT NULL CONSTRAINT auth_providers_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    -- OpenID Connect: the issuer whose discovery document names the endpoints and keys.
    -- GitHub: the site (https://github.com, or a GitHub Enterprise server).
    issuer text NOT NULL,
    -- GitHub: the REST API base (https://api.github.com); unused for OpenID Connect.
    api_url text,
    client_id text NOT NULL CONSTRAINT auth_providers_client_id_length CHECK (char_length(client_id) BETWEEN 1 AND 500),
    -- Sealed with AES-256-GCM under a key derived from SECRET_KEY, bound to `id`. Never returned.
    client_secret bytea NOT NULL,
    scopes text[] NOT NULL,
    -- Which claims hold the address, its verification and the name, where not the standard ones.
    claims jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT auth_providers_claims_object CHECK (jsonb_typeof(claims) = 'object'),
    -- Whether a first sign-in with this provider may create an account.
    allow_sign_up boolean NOT NULL DEFAULT true,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT auth_providers_slug_key UNIQUE (tenant_id, slug),
    CONSTRAINT auth_providers_tenant_id_key UNIQUE (tenant_id, id)
);
CALL sovereign_make_tenant_owned('auth_providers');

-- Exact URLs (besides AUTH_REDIRECT_URLS) a provider sign-in may send the browser back to.
CREATE TABLE auth_redirect_urls (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url text NOT NULL CONSTRAINT auth_redirect_urls_length CHECK (char_length(url) BETWEEN 1 AND 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, url)
);
CALL sovereign_make_tenant_owned('auth_redirect_urls');

-- An external identity, named by its issuer and subject (OpenID Connect Core §5.7): the only
-- stable key. The provider's slug is only a label and may be reused for another issuer.
CREATE TABLE user_identities (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    provider text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    -- The address the provider asserted at the last sign-in, for display.
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_identities_subject_key UNIQUE (tenant_id, issuer, subject),
    CONSTRAINT user_identities_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX user_identities_user_idx ON user_identities (tenant_id, user_id);
CALL sovereign_make_tenant_owned('user_identities');

-- An authorization request in flight, keyed by a digest of its `state`: the nonce and PKCE
-- verifier never leave the server. Spent by the callback (deleted), or expired.
CREATE TABLE provider_flows (
    state_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider text NOT NULL,
    nonce text NOT NULL,
    pkce_verifier text NOT NULL,
    redirect_to text NOT NULL,
    -- Set when a signed-in account links the identity instead of signing in with it.
    link_user_id uuid,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_flows_expiry_idx ON provider_flows (expires_at);
CALL sovereign_make_tenant_owned('provider_flows');

-- The one-time code the app gets on its redirect and exchanges for a session.
CREATE TABLE provider_grants (
    code_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    amr text[] NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provider_grants_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX provider_grants_expiry_idx ON provider_grants (expires_at);
CALL sovereign_make_tenant_owned('provider_grants');
