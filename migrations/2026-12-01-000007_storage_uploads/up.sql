-- Direct uploads: declared up front (key, size, type), their parts written by the client with
-- signed URLs under `<tenant>/uploads/<id>/<part>`, checked and made an object by `complete`.
-- An upload past its expiry is removed, parts and all, by the sweeper.

CREATE TABLE storage_uploads (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    bucket_id uuid NOT NULL,
    key text COLLATE "C" NOT NULL
        CONSTRAINT storage_uploads_key_length CHECK (octet_length(key) BETWEEN 1 AND 1024),
    size bigint NOT NULL CONSTRAINT storage_uploads_size_positive CHECK (size >= 0),
    part_size bigint NOT NULL CONSTRAINT storage_uploads_part_size_positive CHECK (part_size > 0),
    content_type text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    owner_id uuid,
    create_only boolean NOT NULL DEFAULT false,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT storage_uploads_bucket_fkey FOREIGN KEY (tenant_id, bucket_id)
        REFERENCES storage_buckets (tenant_id, id) ON DELETE RESTRICT
);
CREATE INDEX storage_uploads_expiry_idx ON storage_uploads (expires_at);
CALL sovereign_make_tenant_owned('storage_uploads');
