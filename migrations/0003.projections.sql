-- Read models (projections) folded from the event store, and where each one is up to.
-- Each table belongs to one module of ledger/projections/; its rows are derived data:
-- `tongjie rebuild` recreates them from position 0 (into the staging schema below,
-- swapped in atomically with the tracking row), so they may be dropped at any time.

-- Where each projection is up to: the notification id of the last event folded in.
-- Updated in the same transaction as the projection's rows (exactly-once).
CREATE TABLE projection_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    rebuilt_at timestamptz
);

INSERT INTO projection_tracking (name)
VALUES ('item_locations'), ('current_loans'), ('transits'), ('library_balances'),
       ('item_custody');

-- Fresh tables are built here during a rebuild, then moved into public in one
-- transaction; an interrupted rebuild leaves nothing here that a rerun does not drop.
CREATE SCHEMA projections_rebuild;

-- item_locations: every item's current state (ledger/projections/item_locations.py).
CREATE TABLE item_locations (
    item_id uuid PRIMARY KEY,
    owner text NOT NULL,
    barcode text NOT NULL,
    title text,
    status text NOT NULL,        -- on_shelf | on_loan | awaiting_transfer | in_transit | lost | withdrawn
    location text NOT NULL,      -- where it physically is or last was
    custodian text NOT NULL,     -- the library responsible for it now
    destination text,            -- where an awaiting_transfer item must go
    loan_id uuid,
    reader_id uuid,
    transfer_id uuid,
    transfer_to text,
    resumes text,                -- the status a cancelled transfer puts it back in
    since timestamptz NOT NULL,  -- occurred_at of the event that began this status
    version bigint NOT NULL,     -- the item's event version folded in
    position bigint NOT NULL     -- notification id of that event
);
CREATE INDEX ON item_locations (custodian, status);
CREATE INDEX ON item_locations (owner, barcode);

-- current_loans: open loans (ledger/projections/current_loans.py).
CREATE TABLE current_loans (
    item_id uuid PRIMARY KEY,    -- an item has at most one open loan
    loan_id uuid NOT NULL,
    reader_id uuid NOT NULL,     -- the random reader id of the events, never an identity number
    owner text NOT NULL,
    library text NOT NULL,       -- the borrowing library
    borrowed_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    renewals integer NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX ON current_loans (library, due_at);
CREATE INDEX ON current_loans (reader_id);
CREATE INDEX ON current_loans (due_at);
CREATE INDEX ON current_loans (loan_id);

-- Readers as loans show them: the masked number only (NULL once forgotten).
CREATE TABLE loan_readers (
    reader_id uuid PRIMARY KEY,
    masked_number text,
    home_library text NOT NULL
);

-- transits: shipments dispatched and not yet received (ledger/projections/transits.py).
CREATE TABLE transits (
    item_id uuid PRIMARY KEY,    -- an item is in at most one shipment
    transfer_id uuid NOT NULL,
    owner text NOT NULL,
    from_library text NOT NULL,
    to_library text NOT NULL,
    dispatched_at timestamptz NOT NULL,
    position bigint NOT NULL
);
CREATE INDEX ON transits (from_library, dispatched_at);
CREATE INDEX ON transits (to_library, dispatched_at);
CREATE INDEX ON transits (dispatched_at);

-- library_balances: who holds whose books (ledger/projections/library_balances.py).
CREATE TABLE library_balances (
    library text PRIMARY KEY,
    own_at_home integer NOT NULL,      -- own items in its own custody (shelf, loan, waiting)
    own_elsewhere integer NOT NULL,    -- own items in another library's custody
    own_in_transit integer NOT NULL,
    own_lost integer NOT NULL,
    held_for_others integer NOT NULL   -- other libraries' items in its custody
);
-- The settlement sheet: how many of owner's items holder has in its custody (holder <> owner).
CREATE TABLE library_balance_pairs (
    holder text NOT NULL,
    owner text NOT NULL,
    items integer NOT NULL,
    PRIMARY KEY (holder, owner)
);
-- Which bucket each item is counted in, so the next event can move it.
CREATE TABLE library_balance_items (
    item_id uuid PRIMARY KEY,
    owner text NOT NULL,
    holder text NOT NULL,
    bucket text NOT NULL               -- home | elsewhere | transit | lost | withdrawn
);

-- item_custody: which library held each item when (ledger/projections/custody.py), for
-- "what did this library hold at instant T". Held: on shelf or waiting to be shipped
-- there (held_as 'shelf'), or on loan from its desk ('loan'); an item in transit, lost
-- or withdrawn is held by no one. Times are occurred_at, never earlier than the item's
-- previous event. Closed intervals only grow; each item's current one is in
-- item_custody_open (holder NULL while held by no one).
CREATE TABLE item_custody (
    item_id uuid NOT NULL,
    owner text NOT NULL,
    holder text NOT NULL,
    held_as text NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to timestamptz NOT NULL,
    from_version bigint NOT NULL,
    to_version bigint NOT NULL,
    PRIMARY KEY (item_id, from_version)
);
CREATE INDEX ON item_custody (holder, valid_from);

CREATE TABLE item_custody_open (
    item_id uuid PRIMARY KEY,
    owner text NOT NULL,
    holder text,
    held_as text,
    valid_from timestamptz NOT NULL,
    from_version bigint NOT NULL
);
CREATE INDEX ON item_custody_open (holder, valid_from);

-- The service reads the views and runs the live worker; rebuilds (which drop and
-- swap tables) run as the owner of these tables.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    projection_tracking, item_locations, current_loans, loan_readers, transits,
    library_balances, library_balance_pairs, library_balance_items,
    item_custody, item_custody_open
TO tongjie_app;
