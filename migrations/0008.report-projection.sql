-- circulation_report (ledger/projections/circulation_report.py): the facts the
-- consortium's circulation figures are counted from, and the state the fold keeps.
-- Derived data: `tongjie rebuild circulation_report` recreates it from position 0.

INSERT INTO projection_tracking (name) VALUES ('circulation_report')
ON CONFLICT (name) DO NOTHING;

-- One row per counted occurrence, in log order. metric: loan, renewal, return,
-- recirculated, dispatched, received, shipment_ended, lost (see the module).
CREATE TABLE report_facts (
    position bigint NOT NULL,    -- notification id of the event that produced it
    day date NOT NULL,           -- the local (Asia/Shanghai) day it happened (occurred_at)
    metric text NOT NULL,
    library text NOT NULL,       -- the library it counts for
    other text,                  -- the other end: home library, borrowing library, destination…
    ref uuid,                    -- reader (loans, returns), transfer (shipments), item (losses)
    at timestamptz               -- shipments: when dispatched / ended, for overdue checks
);
CREATE INDEX report_facts_day_idx ON report_facts (day, library);
CREATE INDEX report_facts_shipment_idx ON report_facts (ref)
    WHERE metric IN ('received', 'shipment_ended');

CREATE TABLE report_libraries (
    code text PRIMARY KEY,
    name text NOT NULL,
    region text NOT NULL
);

CREATE TABLE report_readers (
    reader_id uuid PRIMARY KEY,
    home_library text NOT NULL
);

-- Items away from home after a return at a library that does not own them.
CREATE TABLE report_stays (
    item_id uuid PRIMARY KEY,
    library text NOT NULL,
    lent_again boolean NOT NULL
);

-- The service reads them and runs the live worker (as in 0003).
GRANT SELECT, INSERT, UPDATE, DELETE ON
    report_facts, report_libraries, report_readers, report_stays
TO tongjie_app;
