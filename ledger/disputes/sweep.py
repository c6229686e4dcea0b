"""Open disputes nobody opened: shipments never received, and returns claimed but not found.

Run by ``tongjie disputes sweep`` (from cron, or the projection worker's loop). Each
trigger — one transfer, one loan — opens at most one dispute, ever: its dispute id
and its command id are derived from the trigger, so a second run (or two at once)
finds the first one's dispute and records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from ledger import commands as c
from ledger.disputes.queries import fold_all, open_disputes_by_item
from ledger.domain.common import CONSORTIUM_TZ, Actor
from ledger.domain.disputes import DisputeKind, automatic_dispute_id
from ledger.domain.errors import DomainError, DuplicateDispute, IdempotencyKeyReused
from ledger.domain.items import Item, Status
from ledger.eventlog import EventLog

if TYPE_CHECKING:
    from ledger.write import Writer

#: The sweep records as the consortium's own process, not as a library's key.
SWEEP = Actor(principal="system:dispute-sweep")

_ITEMS = "ledger.domain.items:Item."
_SHIPMENT_ENDS = [
    _ITEMS + name
    for name in ("TransferReceived", "TransferCancelled", "ReceivedUnannounced", "DeclaredLost")
]


@dataclass
class SweepReport:
    opened: list[str] = field(default_factory=list)  # dispute ids opened by this run
    already_open: int = 0  # triggers whose dispute an earlier run (or a library) opened
    single_library_claims: int = 0  # claims where no second library is involved
    refused: dict[str, int] = field(default_factory=dict)


def sweep(
    app: Writer,
    log: EventLog,
    *,
    transfer_days: int,
    claim_days: int,
    now: datetime | None = None,
    actor: Actor = SWEEP,
) -> SweepReport:
    now = now or datetime.now(UTC)
    report = SweepReport()
    folded = fold_all(log)
    open_by_item = open_disputes_by_item(folded)

    for item in _unreceived_shipments(app, log):
        transfer = item.transfer
        if item.status is not Status.IN_TRANSIT or transfer is None:
            continue
        if transfer.dispatched_at + timedelta(days=transfer_days) > now:
            continue
        if (item.id, DisputeKind.NOT_RECEIVED.value) in open_by_item:
            report.already_open += 1
            continue
        dispatched = transfer.dispatched_at.astimezone(CONSORTIUM_TZ).date()
        _open(
            app,
            report,
            actor,
            trigger=f"transfer-not-received/{transfer.transfer_id}",
            item=item,
            kind=DisputeKind.NOT_RECEIVED,
            opener=transfer.to_library,
            other=transfer.from_library,
            reference=transfer.transfer_id,
            statement=(
                f"Opened automatically: transfer {transfer.transfer_id} of {item.owner}/"
                f"{item.barcode}, dispatched by {transfer.from_library} on {dispatched}, "
                f"was not received by {transfer.to_library} within {transfer_days} days."
            ),
        )

    due = now - timedelta(days=claim_days)
    claims = [c for c in folded.claims.values() if c.occurred_at <= due]
    items = app.load({c.item_id for c in claims})
    for claim in claims:
        item = items.get(claim.item_id)
        if not isinstance(item, Item) or item.loan is None or item.loan.loan_id != claim.loan_id:
            continue  # returned (or lost) since: the claim is settled by the desks
        parties = claim.parties()
        if parties is None:
            report.single_library_claims += 1
            continue
        if (item.id, DisputeKind.CLAIMED_RETURNED.value) in open_by_item:
            report.already_open += 1
            continue
        _open(
            app,
            report,
            actor,
            trigger=f"claimed-returned/{claim.loan_id}",
            item=item,
            kind=DisputeKind.CLAIMED_RETURNED,
            opener=parties[0],
            other=parties[1],
            reference=claim.loan_id,
            statement=(
                f"Opened automatically: on {claim.occurred_at.astimezone(CONSORTIUM_TZ).date()} "
                f"the reader of loan {claim.loan_id} said {item.owner}/{item.barcode} was "
                f"returned at {claim.returned_at}; the loan from {claim.lending_library} was "
                f"still open {claim_days} days later."
            ),
        )
    return report


def _open(
    app: Writer,
    report: SweepReport,
    actor: Actor,
    *,
    trigger: str,
    item: Item,
    kind: DisputeKind,
    opener: str,
    other: str,
    reference: UUID,
    statement: str,
) -> None:
    try:
        result = app.execute(
            c.OpenDispute(
                owner=item.owner,
                barcode=item.barcode,
                kind=str(kind),
                other_party=other,
                statement=statement,
                library=opener,
                actor=actor,
                dispute_id=automatic_dispute_id(trigger),
                trigger=trigger,
                reference_id=reference,
                command_id=f"sweep/{trigger}",
            )
        )
    except (DuplicateDispute, IdempotencyKeyReused):
        report.already_open += 1
        return
    except DomainError as error:  # e.g. a library that has since left the consortium
        report.refused[error.code] = report.refused.get(error.code, 0) + 1
        return
    if result.replayed:
        report.already_open += 1
    else:
        report.opened.append(result.outcome["dispute_id"])


def _unreceived_shipments(app: Writer, log: EventLog) -> list[Item]:
    """Items whose latest dispatch has no receipt, cancellation or loss after it.

    A cheap filter in SQL (a scan of dispatches, an index probe each), then each
    candidate's state is checked on the aggregate itself (loaded by the writer, whose
    cache keeps a sweep that runs every few minutes from replaying the same items).
    """
    ids = log.unanswered(_ITEMS + "TransferDispatched", _SHIPMENT_ENDS)
    loaded = app.load(ids)
    return [a for a in loaded.values() if isinstance(a, Item)]
