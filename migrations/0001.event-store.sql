-- The event store: the table eventsourcing's PostgreSQL recorder writes, plus
-- recorded_at (when the ledger stored the event, as opposed to occurred_at, when
-- it happened at the desk), and a trigger that makes the table append-only.
-- The column layout and the composite type must match eventsourcing 9.5's
-- PostgresApplicationRecorder, which runs with CREATE_TABLE off.

CREATE TYPE stored_event_uuid AS (
    originator_id uuid,
    originator_version bigint,
    topic text,
    state bytea
);

CREATE TABLE circulation_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    -- clock_timestamp(), not now(): evaluated after the table lock is taken, so
    -- recorded_at never goes backwards along notification_id.
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

CREATE UNIQUE INDEX circulation_events_notification_id_idx
    ON circulation_events (notification_id ASC);

CREATE FUNCTION refuse_event_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stored events are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'History is never edited: record a correcting event instead.';
END;
$$;

CREATE TRIGGER circulation_events_append_only
    BEFORE UPDATE OR DELETE ON circulation_events
    FOR EACH ROW EXECUTE FUNCTION refuse_event_edit();

CREATE TRIGGER circulation_events_no_truncate
    BEFORE TRUNCATE ON circulation_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_event_edit();

-- A role for the service that may only read and append events. Roles are
-- cluster-wide, so create it only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tongjie_app') THEN
        CREATE ROLE tongjie_app NOLOGIN;
    END IF;
END;
$$;

REVOKE ALL ON circulation_events FROM PUBLIC;
GRANT SELECT, INSERT ON circulation_events TO tongjie_app;
GRANT USAGE ON SEQUENCE circulation_events_notification_id_seq TO tongjie_app;
