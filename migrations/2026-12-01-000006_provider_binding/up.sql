-- A provider sign-in is bound to the browser that started it (a cookie whose digest the flow
-- keeps: a callback brought by another browser is refused — login CSRF), and linking an
-- identity is confirmed by the signed-in account that asked for it, from its own session.

ALTER TABLE provider_flows
    -- Digest of the flow's cookie; set when the browser starts (or, for a link, opens) it.
    ADD COLUMN browser_hash bytea,
    -- The session that asked to link, which must confirm the link.
    ADD COLUMN link_session_id uuid,
    -- For a link: the provider's URL the browser is sent to once bound.
    ADD COLUMN provider_url text;

-- An identity a provider vouched for, waiting for the account that asked to link it.
CREATE TABLE provider_links (
    code_hash bytea PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    session_id uuid NOT NULL,
    provider text NOT NULL,
    issuer text NOT NULL,
    subject text NOT NULL,
    email text,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provider_links_user_fkey FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX provider_links_expiry_idx ON provider_links (expires_at);
CALL sovereign_make_tenant_owned('provider_links');
