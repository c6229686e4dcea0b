-- Disputes and return claims are events in the event store like everything else
-- (ledger/domain/disputes.py). Listing them, sweeping for overdue claims and
-- drawing up settlement sheets read only a sliver of the log, so these partial
-- indexes hold exactly those rows: a dispute list never scans the circulation.

CREATE INDEX circulation_events_disputes_idx
    ON circulation_events (notification_id)
    WHERE topic LIKE 'ledger.domain.disputes:%';

-- Losses, for the settlement sheet (items lost in another library's custody).
CREATE INDEX circulation_events_losses_idx
    ON circulation_events (notification_id)
    WHERE topic = 'ledger.domain.items:Item.DeclaredLost';
