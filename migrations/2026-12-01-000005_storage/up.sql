-- File storage: buckets, objects (their metadata; the bytes are in the backend under a random
-- blob id), each tenant's usage, and the blobs to remove: uploads in flight (removed by the
-- sweeper when abandoned) and blobs replaced or deleted.

CREATE TABLE storage_buckets (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL
        CONSTRAINT storage_buckets_name_format CHECK (name ~ '^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$' AND name NOT LIKE '%..%'),
    public boolean NOT NULL DEFAULT false,
    max_object_bytes bigint CONSTRAINT storage_buckets_max_positive CHECK (max_object_bytes > 0),
    allowed_types text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT storage_buckets_name_key UNIQUE (tenant_id, name),
    CONSTRAINT storage_buckets_tenant_id_key UNIQUE (tenant_id, id)
);
CALL sovereign_make_tenant_owned('storage_buckets');

CREATE TABLE storage_objects (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bucket_id uuid NOT NULL,
    -- Byte order ("C"), so that a prefix listing is a range scan of the primary key.
    key text COLLATE "C" NOT NULL
        CONSTRAINT storage_objects_key_length CHECK (octet_length(key) BETWEEN 1 AND 1024),
    blob uuid NOT NULL,
    size bigint NOT NULL CONSTRAINT storage_objects_size_positive CHECK (size >= 0),
    content_type text NOT NULL,
    sha256 bytea NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    owner_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, bucket_id, key),
    CONSTRAINT storage_objects_bucket_fkey FOREIGN KEY (tenant_id, bucket_id)
        REFERENCES storage_buckets (tenant_id, id) ON DELETE RESTRICT
);
CALL sovereign_make_tenant_owned('storage_objects');

CREATE TABLE storage_usage (
    tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    bytes bigint NOT NULL DEFAULT 0 CONSTRAINT storage_usage_bytes CHECK (bytes >= 0),
    objects bigint NOT NULL DEFAULT 0 CONSTRAINT storage_usage_objects CHECK (objects >= 0)
);
CALL sovereign_make_tenant_owned('storage_usage');

-- Blobs that may exist in the backend without an object: `pending` while an upload runs,
-- `garbage` once replaced or deleted. The sweeper removes them from the backend, then here.
CREATE TABLE storage_blobs (
    blob uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    state text NOT NULL CONSTRAINT storage_blobs_state_known CHECK (state IN ('pending', 'garbage')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX storage_blobs_sweep_idx ON storage_blobs (state, created_at);
CALL sovereign_make_tenant_owned('storage_blobs');
