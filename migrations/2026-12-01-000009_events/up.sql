-- Events: the transactional outbox every change announces itself through, and the audit log.
--
-- A change writes its events in its own transaction (`events`), so nothing rolled back is ever
-- announced and nothing committed is lost. One dispatcher per deployment reads them in order,
-- hands them on (webhooks, realtime subscribers) and marks them dispatched; dispatched events are
-- kept for a while, then deleted. Events that matter to security and operations are also copied,
-- by the same insert, into `audit_log`: append-only for the runtime role, partitioned by month.

CREATE TABLE events (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Order of writing; the dispatcher hands events on in this order.
    id bigint GENERATED ALWAYS AS IDENTITY,
    -- The public id (UUIDv7): a webhook's `webhook-id`, an audit entry's id.
    event_id uuid NOT NULL,
    type text NOT NULL CONSTRAINT events_type_format CHECK (type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    -- What the event is about: `user:<id>`, `bucket/key`, a table's primary key.
    subject text,
    actor_kind text NOT NULL CONSTRAINT events_actor_known CHECK (actor_kind IN ('user', 'api_key', 'system')),
    -- The account that acted (for an API key, its owner), and the key when one was used.
    actor_id uuid,
    actor_key_id uuid,
    outcome text NOT NULL DEFAULT 'success' CONSTRAINT events_outcome_known CHECK (outcome IN ('success', 'failure')),
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id text,
    ip text,
    user_agent text,
    audit boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    dispatched_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT events_event_id_key UNIQUE (tenant_id, event_id)
);
CREATE INDEX events_pending_idx ON events (tenant_id, id) WHERE dispatched_at IS NULL;
CREATE INDEX events_dispatched_idx ON events (tenant_id, dispatched_at) WHERE dispatched_at IS NOT NULL;
CALL sovereign_make_tenant_owned('events');

-- The audit log. Partitions are made ahead of time by sovereign_audit_partitions() (the server
-- calls it at start and daily, `sovereign migrate` too); the default partition only catches what
-- falls outside them, so an insert never fails for want of one. Retention drops whole months
-- (`sovereign audit prune`, as the schema owner).
CREATE TABLE audit_log (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    actor_kind text NOT NULL,
    actor_id uuid,
    actor_key_id uuid,
    action text NOT NULL,
    target text,
    outcome text NOT NULL,
    ip text,
    user_agent text,
    request_id text,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant_id, created_at, id)
) PARTITION BY RANGE (created_at);
CREATE INDEX audit_log_actor_idx ON audit_log (tenant_id, actor_id, created_at);
CREATE INDEX audit_log_action_idx ON audit_log (tenant_id, action, created_at);
CREATE INDEX audit_log_target_idx ON audit_log (tenant_id, target, created_at);
CALL sovereign_make_tenant_owned('audit_log');
-- Append-only: the runtime role reads and adds entries, never changes or removes one.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM sovereign_app;

-- Makes one partition the way the parent is: tenant-owned (policies are not inherited, and a
-- partition can be queried by name) and append-only for the runtime role.
CREATE PROCEDURE sovereign_audit_seal(partition regclass)
    LANGUAGE plpgsql
    AS $$
BEGIN
    CALL sovereign_make_tenant_owned(partition);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %s FROM sovereign_app', partition);
END
$$;

CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CALL sovereign_audit_seal('audit_log_default');

-- Creates the partitions of this month and the next `months_ahead` (UTC months), if missing.
-- Runs as the owner, so the runtime role can keep partitions ahead without owning anything;
-- it can create, never drop.
CREATE FUNCTION sovereign_audit_partitions(months_ahead integer DEFAULT 2) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    first date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    month date;
    name text;
    created integer := 0;
BEGIN
    IF months_ahead < 0 OR months_ahead > 24 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 24';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('sovereign_audit_partitions'));
    FOR i IN 0..months_ahead LOOP
        month := first + make_interval(months => i);
        name := format('audit_log_%s', to_char(month, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                name,
                month::timestamp AT TIME ZONE 'UTC',
                (month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
            );
            CALL sovereign_audit_seal(name::regclass);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;
SELECT sovereign_audit_partitions(2);

-- Retention: drops the monthly partitions that end at or before `before`, and names them. Only
-- the owner of the partitions can (`sovereign audit prune` connects as the schema owner); the
-- runtime role may not even call it.
CREATE FUNCTION sovereign_audit_prune(before timestamptz) RETURNS SETOF text
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    part text;
BEGIN
    FOR part IN
        SELECT c.relname
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'audit_log'::regclass
           AND c.relname ~ '^audit_log_[0-9]{4}_[0-9]{2}$'
         ORDER BY c.relname
    LOOP
        IF (to_date(substr(part, 11), 'YYYY_MM') + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= before THEN
            EXECUTE format('DROP TABLE %I', part);
            RETURN NEXT part;
        END IF;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION sovereign_audit_prune(timestamptz) FROM PUBLIC;

-- One statement-level trigger does what every insert into the outbox needs: copy the audited
-- events into the audit log, and wake the dispatcher (once per tenant and transaction: NOTIFY is
-- sent at commit, folds duplicates, and is never sent for a rollback).
CREATE FUNCTION sovereign_events_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO audit_log (tenant_id, id, created_at, actor_kind, actor_id, actor_key_id, action, target,
                           outcome, ip, user_agent, request_id, data)
    SELECT tenant_id, event_id, created_at, actor_kind, actor_id, actor_key_id, type, subject,
           outcome, ip, user_agent, request_id, data
      FROM inserted
     WHERE audit;
    PERFORM pg_notify('sovereign_events', t::text)
       FROM (SELECT DISTINCT tenant_id AS t FROM inserted) AS tenants;
    RETURN NULL;
END
$$;
CREATE TRIGGER events_inserted AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION sovereign_events_inserted();

-- Tenant administration records what it does to tenants (in the acting superadmin's tenant):
-- it may add events, and nothing else of a tenant's.
GRANT INSERT ON events, audit_log TO sovereign_tenant_admin;
GRANT USAGE ON SEQUENCE events_id_seq TO sovereign_tenant_admin;
