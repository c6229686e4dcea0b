-- Tables the writer keeps beside the event store, written in the same
-- transaction as the events they belong to.

-- Idempotency: one row per command that recorded events. A retried command
-- (same command_id) finds its row and gets the original outcome back.
CREATE TABLE command_log (
    command_id text PRIMARY KEY,
    command text NOT NULL,
    fingerprint text NOT NULL,
    outcome jsonb NOT NULL,
    notification_ids bigint[] NOT NULL,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Loans and transfers are addressed by their own ids in the API; this says
-- which item stream holds each one.
CREATE TABLE item_references (
    reference_id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('loan', 'transfer')),
    item_id uuid NOT NULL,
    owner text NOT NULL,
    barcode text NOT NULL
);

-- The only link from a person's identity number (as a keyed hash) to the
-- random reader id used in events. Deleting a row ("forget") leaves the
-- history intact and unlinkable to the person.
CREATE TABLE reader_identities (
    identity_hmac text PRIMARY KEY,
    reader_id uuid NOT NULL UNIQUE,
    linked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

GRANT SELECT, INSERT ON command_log, item_references TO tongjie_app;
GRANT SELECT, INSERT, DELETE ON reader_identities TO tongjie_app;
