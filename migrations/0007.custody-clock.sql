-- depends: 0003.projections
-- item_custody_open.seen_at: the latest event time along each item's stream, so that a
-- custody interval never starts before the item's previous event of any kind (a renewal
-- included) and holdings as of an instant agree with each item's history as of it.
-- Existing rows take their interval's start; `tongjie rebuild item_custody` makes them exact.
ALTER TABLE item_custody_open ADD COLUMN seen_at timestamptz;
UPDATE item_custody_open SET seen_at = valid_from;
ALTER TABLE item_custody_open ALTER COLUMN seen_at SET NOT NULL;
