-- Vector search: collections of points (an id, a pgvector embedding, a JSON payload), owned by a
-- tenant. See docs/vector.md and the storage decision in docs/ARCHITECTURE.md.
--
-- Storage: one table, `vector_points`, LIST-partitioned by collection. Creating a collection
-- creates its partition; deleting one drops it. Each partition gets its own HNSW index on
-- `embedding::vector(<dimension>)` and its own payload indexes, so an index build or a bulk load
-- locks one collection, never another tenant's, and a search touches only its collection's index.
-- The runtime role owns nothing and cannot run DDL, so the few DDL statements live in the
-- SECURITY DEFINER functions below. Each finds its collection among the current tenant's
-- (explicitly: their owner may be a superuser, whom row-level security does not bind), so a
-- caller can only reach its own tenant's collections, and every identifier they build comes from
-- a uuid or a checked key.

CREATE TABLE vector_collections (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name text NOT NULL
        CONSTRAINT vector_collections_name_format CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    dimension integer NOT NULL
        CONSTRAINT vector_collections_dimension_range CHECK (dimension BETWEEN 1 AND 2000),
    distance text NOT NULL
        CONSTRAINT vector_collections_distance_known CHECK (distance IN ('cosine', 'l2', 'dot')),
    hnsw_m integer NOT NULL
        CONSTRAINT vector_collections_hnsw_m_range CHECK (hnsw_m BETWEEN 2 AND 100),
    hnsw_ef_construction integer NOT NULL
        CONSTRAINT vector_collections_hnsw_ef_range
            CHECK (hnsw_ef_construction BETWEEN 4 AND 1000 AND hnsw_ef_construction >= 2 * hnsw_m),
    -- Indexed payload keys and their kinds: {"category": "keyword", "year": "integer"}.
    payload_indexes jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT vector_collections_payload_indexes_object CHECK (jsonb_typeof(payload_indexes) = 'object'),
    -- Whether its partition has had planner statistics gathered (see sovereign_vector_analyze).
    analyzed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vector_collections_tenant_name_key UNIQUE (tenant_id, name),
    CONSTRAINT vector_collections_tenant_id_key UNIQUE (tenant_id, id)
);
CALL sovereign_make_tenant_owned('vector_collections');

CREATE TABLE vector_points (
    tenant_id uuid NOT NULL,
    collection_id uuid NOT NULL,
    -- A UUID (stored in its canonical lower-case form) or any other client-chosen string.
    id text NOT NULL
        CONSTRAINT vector_points_id_length CHECK (char_length(id) BETWEEN 1 AND 128),
    -- Dimension-less column: each collection's dimension is enforced by the application and by
    -- the cast in its partition's index expression.
    embedding vector NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT vector_points_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, id),
    CONSTRAINT vector_points_collection_fkey FOREIGN KEY (tenant_id, collection_id)
        REFERENCES vector_collections (tenant_id, id) ON DELETE CASCADE
) PARTITION BY LIST (collection_id);
CALL sovereign_make_tenant_owned('vector_points');

-- The partition of a collection.
CREATE FUNCTION sovereign_vector_partition(collection uuid) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT 'vector_points_' || replace(collection::text, '-', '') $$;

-- A new collection gets its partition, tenant-owned like every table.
CREATE FUNCTION sovereign_vector_collection_created() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    part text := sovereign_vector_partition(NEW.id);
BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF vector_points FOR VALUES IN (%L)', part, NEW.id);
    CALL sovereign_make_tenant_owned(part::regclass);
    RETURN NULL;
END
$$;
CREATE TRIGGER vector_collections_storage_created AFTER INSERT ON vector_collections
    FOR EACH ROW EXECUTE FUNCTION sovereign_vector_collection_created();

-- Deleting a collection (directly, or through its tenant) drops its partition first: instant,
-- whatever its size, and the cascade then finds no rows.
CREATE FUNCTION sovereign_vector_collection_dropped() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', sovereign_vector_partition(OLD.id));
    RETURN OLD;
END
$$;
CREATE TRIGGER vector_collections_storage_dropped BEFORE DELETE ON vector_collections
    FOR EACH ROW EXECUTE FUNCTION sovereign_vector_collection_dropped();

-- Gathers planner statistics of a collection's partition (of the current tenant); with
-- `only_if_new`, only when it has none yet and holds at least 1,000 points. Until then the planner
-- knows nothing of the partition, guesses that the row-level-security condition keeps 0.5% of
-- its rows, and prefers a scan to the HNSW index. Autovacuum keeps statistics fresh afterwards.
CREATE FUNCTION sovereign_vector_analyze(collection uuid, only_if_new boolean) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    c vector_collections;
    big boolean;
BEGIN
    SELECT * INTO c FROM vector_collections
     WHERE id = collection AND tenant_id = sovereign_current_tenant();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such collection' USING ERRCODE = 'no_data_found';
    END IF;
    IF only_if_new AND c.analyzed THEN
        RETURN false;
    END IF;
    big := (SELECT count(*) FROM (SELECT FROM vector_points
                                   WHERE collection_id = collection LIMIT 1000) AS s) >= 1000;
    IF only_if_new AND NOT big THEN
        RETURN false;
    END IF;
    EXECUTE format('ANALYZE %I', sovereign_vector_partition(collection));
    -- Recorded here rather than read from pg_stats, which hides the statistics of tables under
    -- row-level security from everyone bound by it (this function's owner included). Statistics
    -- of a nearly empty partition do not count: the first real load gathers them again.
    IF big AND NOT c.analyzed THEN
        UPDATE vector_collections SET analyzed = true WHERE id = collection;
    END IF;
    RETURN true;
END
$$;

-- Builds the HNSW index of a collection (of the current tenant) with its parameters. Cosine
-- collections store unit vectors, so they use the cheaper inner-product operator class.
CREATE FUNCTION sovereign_vector_build_index(collection uuid) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    c vector_collections;
    part text;
BEGIN
    SELECT * INTO c FROM vector_collections
     WHERE id = collection AND tenant_id = sovereign_current_tenant();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such collection' USING ERRCODE = 'no_data_found';
    END IF;
    part := sovereign_vector_partition(c.id);
    -- One index build per collection at a time: two concurrent builds would each hold the
    -- table's SHARE lock and then deadlock in ANALYZE.
    PERFORM pg_advisory_xact_lock(hashtext('sovereign_vector_index'), hashtext(c.id::text));
    EXECUTE format(
        'CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw ((embedding::vector(%s)) %s) WITH (m = %s, ef_construction = %s)',
        part || '_hnsw', part, c.dimension,
        CASE c.distance WHEN 'l2' THEN 'vector_l2_ops' ELSE 'vector_ip_ops' END,
        c.hnsw_m, c.hnsw_ef_construction
    );
    PERFORM sovereign_vector_analyze(collection, false);
END
$$;

-- Indexes one payload key of a collection (of the current tenant): a B-tree on the JSON value
-- (match, any-of, exists) and, for numbers, one on its float8 value (ranges). `key` is a dotted
-- path of identifiers, e.g. `category` or `meta.lang`.
CREATE FUNCTION sovereign_vector_index_payload(collection uuid, key text, kind text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    c vector_collections;
    part text;
    path text;
BEGIN
    IF key !~ '^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$' THEN
        RAISE EXCEPTION 'invalid payload key' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF kind NOT IN ('keyword', 'integer', 'float', 'bool') THEN
        RAISE EXCEPTION 'invalid payload index kind' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO c FROM vector_collections
     WHERE id = collection AND tenant_id = sovereign_current_tenant();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such collection' USING ERRCODE = 'no_data_found';
    END IF;
    part := sovereign_vector_partition(c.id);
    PERFORM pg_advisory_xact_lock(hashtext('sovereign_vector_index'), hashtext(c.id::text));
    path := '{' || replace(key, '.', ',') || '}';
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I ((payload #> %L::text[]))',
                   part || '_p_' || left(md5(key), 12), part, path);
    IF kind IN ('integer', 'float') THEN
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON %I ((CASE WHEN jsonb_typeof(payload #> %L::text[]) = ''number'' THEN (payload #> %L::text[])::float8 END))',
            part || '_n_' || left(md5(key), 12), part, path, path);
    END IF;
    UPDATE vector_collections
       SET payload_indexes = payload_indexes || jsonb_build_object(key, kind), updated_at = now()
     WHERE id = c.id;
    -- Expression indexes have statistics of their own only after ANALYZE.
    PERFORM sovereign_vector_analyze(collection, false);
END
$$;

REVOKE ALL ON FUNCTION sovereign_vector_collection_created() FROM PUBLIC;
REVOKE ALL ON FUNCTION sovereign_vector_collection_dropped() FROM PUBLIC;
REVOKE ALL ON FUNCTION sovereign_vector_analyze(uuid, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION sovereign_vector_build_index(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION sovereign_vector_index_payload(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sovereign_vector_analyze(uuid, boolean) TO sovereign_app;
GRANT EXECUTE ON FUNCTION sovereign_vector_build_index(uuid) TO sovereign_app;
GRANT EXECUTE ON FUNCTION sovereign_vector_index_payload(uuid, text, text) TO sovereign_app;
