-- Tamper evidence (README, "Tamper evidence"): every stored event gets a leaf hash and a
-- chain hash in the transaction that appends it; the leaves form an RFC 9162 Merkle tree
-- whose perfect subtrees of 16 leaves and more are kept by (level, index), so a proof
-- reads O(log n) rows; signed checkpoints publish the tree's root; witnesses confirm them.
-- All of it is append-only, like the events.

-- Which ledger this is: named by receipts and signed into every checkpoint, so a receipt
-- or a checkpoint from another ledger is recognised. One row, made here, never changed.
CREATE TABLE ledger_identity (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    ledger_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO ledger_identity DEFAULT VALUES;

-- One row per stored event. leaf_index is the event's position in the tree: the dense,
-- 0-based order of stored events by notification_id (notification ids may have gaps).
CREATE TABLE event_chain (
    leaf_index bigint PRIMARY KEY CHECK (leaf_index >= 0),
    notification_id bigint NOT NULL UNIQUE,
    leaf_hash bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    chain_hash bytea NOT NULL CHECK (octet_length(chain_hash) = 32)
);

-- Perfect subtrees: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
-- Levels below 4 are recomputed from at most 16 leaf hashes when a proof needs them,
-- which keeps this table at n/8 rows instead of n.
CREATE TABLE merkle_nodes (
    level smallint NOT NULL CHECK (level >= 4 AND level < 63),
    idx bigint NOT NULL CHECK (idx >= 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- The public halves of the keys checkpoints are signed with (Ed25519, raw 32 bytes).
CREATE TABLE signing_keys (
    fingerprint text PRIMARY KEY,           -- hex SHA-256 of the raw public key
    public_key bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Signed tree heads. body is the exact signed text; the other columns repeat it for queries.
CREATE TABLE checkpoints (
    tree_size bigint PRIMARY KEY CHECK (tree_size > 0),
    root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    signed_at timestamptz NOT NULL,
    body text NOT NULL,
    signature bytea NOT NULL CHECK (octet_length(signature) = 64),
    key_fingerprint text NOT NULL REFERENCES signing_keys (fingerprint)
);

-- A witness (a member library's `tongjie witness`) checked a checkpoint against the one it
-- kept before and signed it with its own Ed25519 key.
CREATE TABLE witness_confirmations (
    tree_size bigint NOT NULL REFERENCES checkpoints (tree_size),
    witness_fingerprint text NOT NULL,
    witness_key bytea NOT NULL CHECK (octet_length(witness_key) = 32),
    signature bytea NOT NULL CHECK (octet_length(signature) = 64),
    witness_name text NOT NULL DEFAULT '',
    recorded_by text NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tree_size, witness_fingerprint)
);

CREATE FUNCTION refuse_integrity_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'integrity records are append-only: % refused on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Hashes, checkpoints and confirmations are never edited.';
END;
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger_identity', 'event_chain', 'merkle_nodes', 'signing_keys',
                             'checkpoints', 'witness_confirmations'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I'
                       ' FOR EACH ROW EXECUTE FUNCTION refuse_integrity_edit()',
                       t || '_append_only', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION refuse_integrity_edit()',
                       t || '_no_truncate', t);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
    END LOOP;
END;
$$;

-- Chains the events stored after the chain's head, in notification order: the same
-- layout as ledger/integrity/hashing.py, written a second time in SQL. Run once below, to
-- seal a history recorded before this migration; the writer chains every later save in
-- its own transaction. Only the owner may run it: it is an operator's act, never the app's.
CREATE FUNCTION chain_unchained_events() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    leaf bytea;
    carry bytea;
    previous bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
    frontier bytea[] := '{}';
    i bigint := 0;
    lvl int;
    n bigint := 0;
    head bigint := 0;
BEGIN
    LOCK TABLE circulation_events IN EXCLUSIVE MODE;
    SELECT leaf_index + 1, chain_hash, notification_id INTO i, previous, head
      FROM event_chain ORDER BY leaf_index DESC LIMIT 1;
    IF NOT FOUND THEN
        i := 0;
        previous := '\x0000000000000000000000000000000000000000000000000000000000000000';
        head := 0;
    END IF;
    -- The frontier of the tree so far: levels >= 4 from merkle_nodes, lower ones rebuilt.
    IF i > 0 THEN
        FOR lvl IN 0..62 LOOP
            IF (i >> lvl) & 1 = 1 THEN
                IF lvl >= 4 THEN
                    SELECT hash INTO carry FROM merkle_nodes
                     WHERE level = lvl AND idx = (i >> lvl) - 1;
                ELSE
                    carry := NULL;
                    DECLARE
                        part bytea[] := '{}';
                        k int;
                        c record;
                    BEGIN
                        FOR c IN SELECT leaf_hash FROM event_chain
                                  WHERE leaf_index >= ((i >> lvl) - 1) << lvl
                                    AND leaf_index < (i >> lvl) << lvl
                                  ORDER BY leaf_index LOOP
                            part := part || c.leaf_hash;
                        END LOOP;
                        WHILE array_length(part, 1) > 1 LOOP
                            FOR k IN 1..array_length(part, 1) / 2 LOOP
                                part[k] := sha256('\x01'::bytea || part[2 * k - 1] || part[2 * k]);
                            END LOOP;
                            part := part[1:array_length(part, 1) / 2];
                        END LOOP;
                        carry := part[1];
                    END;
                END IF;
                frontier[lvl + 1] := carry;
            END IF;
        END LOOP;
    END IF;
    FOR r IN SELECT notification_id, originator_id, originator_version, recorded_at,
                    convert_to(coalesce(topic, ''), 'UTF8') AS topic,
                    coalesce(state, '\x'::bytea) AS state
               FROM circulation_events WHERE notification_id > head
              ORDER BY notification_id LOOP
        leaf := sha256('\x0001'::bytea
                       || int8send(r.notification_id)
                       || uuid_send(r.originator_id)
                       || int8send(r.originator_version)
                       || int8send((extract(epoch FROM r.recorded_at) * 1000000)::bigint)
                       || int4send(octet_length(r.topic)) || r.topic
                       || int4send(octet_length(r.state)) || r.state);
        previous := sha256('\x02'::bytea || previous || leaf);
        INSERT INTO event_chain (leaf_index, notification_id, leaf_hash, chain_hash)
        VALUES (i, r.notification_id, leaf, previous);
        carry := leaf;
        lvl := 0;
        WHILE (i >> lvl) & 1 = 1 LOOP
            carry := sha256('\x01'::bytea || frontier[lvl + 1] || carry);
            frontier[lvl + 1] := NULL;
            lvl := lvl + 1;
            IF lvl >= 4 THEN
                INSERT INTO merkle_nodes (level, idx, hash)
                VALUES (lvl, ((i + 1) >> lvl) - 1, carry);
            END IF;
        END LOOP;
        frontier[lvl + 1] := carry;
        i := i + 1;
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;
REVOKE ALL ON FUNCTION chain_unchained_events() FROM PUBLIC;

DO $$ BEGIN PERFORM chain_unchained_events(); END $$;

GRANT SELECT ON ledger_identity TO tongjie_app;
GRANT SELECT, INSERT ON event_chain, merkle_nodes, signing_keys, checkpoints,
    witness_confirmations TO tongjie_app;
