// @generated automatically by Diesel CLI.

pub mod sql_types {
    #[derive(diesel::query_builder::QueryId, Clone, diesel::sql_types::SqlType)]
    #[diesel(postgres_type(name = "vector"))]
    pub struct Vector;
}

diesel::table! {
    action_tokens (token_hash) {
        token_hash -> Bytea,
        tenant_id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        role -> Text,
        scopes -> Array<Nullable<Text>>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_log (tenant_id, created_at, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        created_at -> Timestamptz,
        actor_kind -> Text,
        actor_id -> Nullable<Uuid>,
        actor_key_id -> Nullable<Uuid>,
        action -> Text,
        target -> Nullable<Text>,
        outcome -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
        data -> Jsonb,
    }
}

diesel::table! {
    auth_policies (tenant_id) {
        tenant_id -> Uuid,
        require_aal2 -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    auth_providers (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        slug -> Text,
        kind -> Text,
        name -> Text,
        issuer -> Text,
        api_url -> Nullable<Text>,
        client_id -> Text,
        client_secret -> Bytea,
        scopes -> Array<Nullable<Text>>,
        claims -> Jsonb,
        allow_sign_up -> Bool,
        enabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    auth_redirect_urls (tenant_id, url) {
        tenant_id -> Uuid,
        url -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    events (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Int8,
        event_id -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        subject -> Nullable<Text>,
        actor_kind -> Text,
        actor_id -> Nullable<Uuid>,
        actor_key_id -> Nullable<Uuid>,
        outcome -> Text,
        data -> Jsonb,
        request_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        audit -> Bool,
        created_at -> Timestamptz,
        dispatched_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mfa_challenges (token_hash) {
        token_hash -> Bytea,
        tenant_id -> Uuid,
        user_id -> Uuid,
        amr -> Array<Nullable<Text>>,
        user_agent -> Text,
        ip -> Nullable<Text>,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        purpose -> Text,
        factor_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    mfa_factors (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        kind -> Text,
        name -> Text,
        secret -> Bytea,
        confirmed_at -> Nullable<Timestamptz>,
        last_step -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    passkey_ceremonies (token_hash) {
        token_hash -> Bytea,
        tenant_id -> Uuid,
        purpose -> Text,
        user_id -> Nullable<Uuid>,
        session_id -> Nullable<Uuid>,
        name -> Nullable<Text>,
        state -> Jsonb,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    passkeys (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        credential_id -> Bytea,
        credential -> Jsonb,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    provider_flows (state_hash) {
        state_hash -> Bytea,
        tenant_id -> Uuid,
        provider -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        redirect_to -> Text,
        link_user_id -> Nullable<Uuid>,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        browser_hash -> Nullable<Bytea>,
        link_session_id -> Nullable<Uuid>,
        provider_url -> Nullable<Text>,
    }
}

diesel::table! {
    provider_grants (code_hash) {
        code_hash -> Bytea,
        tenant_id -> Uuid,
        user_id -> Uuid,
        amr -> Array<Nullable<Text>>,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    provider_links (code_hash) {
        code_hash -> Bytea,
        tenant_id -> Uuid,
        user_id -> Uuid,
        session_id -> Uuid,
        provider -> Text,
        issuer -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (tenant_id, user_id, code_hash) {
        tenant_id -> Uuid,
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        tenant_id -> Uuid,
        session_id -> Uuid,
        created_at -> Timestamptz,
        spent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        user_agent -> Text,
        ip -> Nullable<Text>,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
        aal -> Text,
        amr -> Array<Nullable<Text>>,
        auth_time -> Timestamptz,
    }
}

diesel::table! {
    storage_blobs (blob) {
        blob -> Uuid,
        tenant_id -> Uuid,
        state -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    storage_buckets (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        public -> Bool,
        max_object_bytes -> Nullable<Int8>,
        allowed_types -> Array<Nullable<Text>>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    storage_objects (tenant_id, bucket_id, key) {
        tenant_id -> Uuid,
        bucket_id -> Uuid,
        key -> Text,
        blob -> Uuid,
        size -> Int8,
        content_type -> Text,
        sha256 -> Bytea,
        metadata -> Jsonb,
        owner_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    storage_uploads (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        bucket_id -> Uuid,
        key -> Text,
        size -> Int8,
        part_size -> Int8,
        content_type -> Text,
        metadata -> Jsonb,
        owner_id -> Nullable<Uuid>,
        create_only -> Bool,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        completing_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    storage_usage (tenant_id) {
        tenant_id -> Uuid,
        bytes -> Int8,
        objects -> Int8,
    }
}

diesel::table! {
    tenants (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        status -> Text,
        settings -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_identities (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        user_id -> Uuid,
        provider -> Text,
        issuer -> Text,
        subject -> Text,
        email -> Nullable<Text>,
        created_at -> Timestamptz,
        last_sign_in_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        email -> Text,
        full_name -> Text,
        password_hash -> Nullable<Text>,
        role -> Text,
        is_active -> Bool,
        email_verified -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    vector_collections (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        dimension -> Int4,
        distance -> Text,
        hnsw_m -> Int4,
        hnsw_ef_construction -> Int4,
        payload_indexes -> Jsonb,
        analyzed -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::sql_types::Vector;

    vector_points (collection_id, id) {
        tenant_id -> Uuid,
        collection_id -> Uuid,
        id -> Text,
        embedding -> Vector,
        payload -> Jsonb,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(action_tokens -> tenants (tenant_id));
diesel::joinable!(api_keys -> tenants (tenant_id));
diesel::joinable!(audit_log -> tenants (tenant_id));
diesel::joinable!(auth_policies -> tenants (tenant_id));
diesel::joinable!(auth_providers -> tenants (tenant_id));
diesel::joinable!(auth_redirect_urls -> tenants (tenant_id));
diesel::joinable!(events -> tenants (tenant_id));
diesel::joinable!(mfa_challenges -> tenants (tenant_id));
diesel::joinable!(mfa_factors -> tenants (tenant_id));
diesel::joinable!(passkey_ceremonies -> tenants (tenant_id));
diesel::joinable!(passkeys -> tenants (tenant_id));
diesel::joinable!(provider_flows -> tenants (tenant_id));
diesel::joinable!(provider_grants -> tenants (tenant_id));
diesel::joinable!(provider_links -> tenants (tenant_id));
diesel::joinable!(recovery_codes -> tenants (tenant_id));
diesel::joinable!(refresh_tokens -> tenants (tenant_id));
diesel::joinable!(sessions -> tenants (tenant_id));
diesel::joinable!(storage_blobs -> tenants (tenant_id));
diesel::joinable!(storage_buckets -> tenants (tenant_id));
diesel::joinable!(storage_objects -> tenants (tenant_id));
diesel::joinable!(storage_uploads -> tenants (tenant_id));
diesel::joinable!(storage_usage -> tenants (tenant_id));
diesel::joinable!(user_identities -> tenants (tenant_id));
diesel::joinable!(users -> tenants (tenant_id));
diesel::joinable!(vector_collections -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    action_tokens,
    api_keys,
    audit_log,
    auth_policies,
    auth_providers,
    auth_redirect_urls,
    events,
    mfa_challenges,
    mfa_factors,
    passkey_ceremonies,
    passkeys,
    provider_flows,
    provider_grants,
    provider_links,
    recovery_codes,
    refresh_tokens,
    sessions,
    storage_blobs,
    storage_buckets,
    storage_objects,
    storage_uploads,
    storage_usage,
    tenants,
    user_identities,
    users,
    vector_collections,
    vector_points,
);
