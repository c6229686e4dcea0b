"""Disputes between libraries, without a database: who may open, speak and rule.

The claims, the sweep, the list and the settlement sheet read the projections or run
as separate processes: they stay in ``tests/test_disputes.py``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import uuid4

from ledger import commands as c
from ledger.domain.disputes import Dispute, DisputeStatus
from ledger.domain.errors import (
    AdministratorOnly,
    DisputeClosed,
    InvalidInput,
    NotADisputeParty,
    UnknownDispute,
    UnknownItem,
    WrongLibrary,
)
from tests.helpers import (
    ADMIN,
    CHENGDU,
    JINJIANG,
    SHA,
    YUZHONG,
    desk,
    refused,
    shipped,
)
from tests.helpers import open_dispute as open_

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Writer


def test_a_dispute_is_a_case_file_of_events(app: Writer, uow: MemoryUnitOfWork) -> None:
    shipped(app)
    dispute_id = open_(app)
    app.execute(
        c.AddStatement(
            dispute_id=dispute_id,
            text="We dispatched it by courier, waybill SF123.",
            library=YUZHONG,
            actor=desk(YUZHONG),
        )
    )
    app.execute(
        c.AddAttachment(
            dispute_id=dispute_id,
            uri="https://files.yuzhong.example/sf123.pdf",
            sha256=SHA.upper(),
            description="courier receipt",
            library=YUZHONG,
            actor=desk(YUZHONG),
        )
    )
    result = app.execute(
        c.ResolveDispute(
            dispute_id=dispute_id,
            liable_library=YUZHONG,
            compensation="85.5",
            text="No proof of delivery.",
            actor=ADMIN,
        )
    )
    assert result.outcome["compensation_cny"] == "85.50"
    events = uow.stream(dispute_id)
    assert [type(e).__name__ for e in events] == [
        "Opened",
        "StatementAdded",
        "AttachmentAdded",
        "Resolved",
    ]
    resolved = events[-1]
    assert resolved.compensation_cny == "85.50" and isinstance(resolved.compensation_cny, str)
    assert resolved.recorded_by == ADMIN.principal
    assert resolved.library == CHENGDU  # the case's desk; the key says it was the administrator
    assert events[2].sha256 == SHA and events[2].uri.endswith("sf123.pdf")
    dispute = app.load([dispute_id])[dispute_id]
    assert isinstance(dispute, Dispute)
    assert dispute.status is DisputeStatus.RESOLVED
    assert dispute.resolution.compensation_cny == Decimal("85.50")
    assert len(dispute.statements) == 2
    # closed: nothing more, and a refusal records nothing
    refused(
        uow,
        DisputeClosed,
        lambda: app.execute(
            c.AddStatement(dispute_id=dispute_id, text="late", library=CHENGDU, actor=desk(CHENGDU))
        ),
    )
    refused(
        uow,
        DisputeClosed,
        lambda: app.execute(
            c.ResolveDispute(
                dispute_id=dispute_id, liable_library=None, compensation="0", text="x", actor=ADMIN
            )
        ),
    )


def test_unknown_items_and_non_parties_are_refused(app: Writer, uow: MemoryUnitOfWork) -> None:
    shipped(app)
    refused(uow, UnknownItem, lambda: open_(app, barcode="NOPE"), field="barcode")
    # Jinjiang never touched the item: it can neither open nor be named
    refused(
        uow,
        NotADisputeParty,
        lambda: open_(app, library=JINJIANG, actor=desk(JINJIANG)),
        field="library",
    )
    refused(uow, NotADisputeParty, lambda: open_(app, other_party=JINJIANG), field="other_party")
    refused(uow, InvalidInput, lambda: open_(app, other_party=CHENGDU), field="other_party")
    refused(uow, InvalidInput, lambda: open_(app, kind="vanished"), field="kind")
    refused(uow, InvalidInput, lambda: open_(app, statement="  "), field="statement")
    refused(uow, WrongLibrary, lambda: open_(app, actor=desk(YUZHONG)), field="library")
    dispute_id = open_(app)
    refused(
        uow,
        NotADisputeParty,
        lambda: app.execute(
            c.AddStatement(
                dispute_id=dispute_id, text="we know", library=JINJIANG, actor=desk(JINJIANG)
            )
        ),
    )
    refused(
        uow,
        UnknownDispute,
        lambda: app.execute(
            c.AddStatement(dispute_id=uuid4(), text="hello", library=CHENGDU, actor=desk(CHENGDU))
        ),
    )
    refused(
        uow,
        InvalidInput,
        lambda: app.execute(
            c.AddAttachment(
                dispute_id=dispute_id,
                uri="not a uri",
                sha256=SHA,
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
        field="uri",
    )
    refused(
        uow,
        InvalidInput,
        lambda: app.execute(
            c.AddAttachment(
                dispute_id=dispute_id,
                uri="https://x.example/a",
                sha256="abc",
                library=CHENGDU,
                actor=desk(CHENGDU),
            )
        ),
        field="sha256",
    )


def test_only_the_administrator_resolves(app: Writer, uow: MemoryUnitOfWork) -> None:
    shipped(app)
    dispute_id = open_(app)
    for key in (desk(CHENGDU), desk(YUZHONG)):
        refused(
            uow,
            AdministratorOnly,
            lambda key=key: app.execute(
                c.ResolveDispute(
                    dispute_id=dispute_id,
                    liable_library=YUZHONG,
                    compensation="10",
                    text="mine",
                    actor=key,
                )
            ),
        )

    def resolve(liable: str | None, amount: object) -> None:
        app.execute(
            c.ResolveDispute(
                dispute_id=dispute_id,
                liable_library=liable,
                compensation=amount,
                text="ruling",
                actor=ADMIN,
            )
        )

    refused(uow, InvalidInput, lambda: resolve(YUZHONG, 85.5))  # a float is never money
    refused(uow, InvalidInput, lambda: resolve(YUZHONG, "-1"))
    refused(uow, InvalidInput, lambda: resolve(YUZHONG, "1.005"))
    refused(uow, InvalidInput, lambda: resolve(YUZHONG, "ten"))
    refused(uow, InvalidInput, lambda: resolve(JINJIANG, "10"), field="liable_library")
    refused(uow, InvalidInput, lambda: resolve(None, "10"), field="compensation")
    resolve(None, "0")
    assert app.load([dispute_id])[dispute_id].resolution.liable_library is None


def test_withdrawal_by_the_opener_only(app: Writer, uow: MemoryUnitOfWork) -> None:
    shipped(app)
    dispute_id = open_(app)
    refused(
        uow,
        NotADisputeParty,
        lambda: app.execute(
            c.WithdrawDispute(dispute_id=dispute_id, reason="found it", actor=desk(YUZHONG))
        ),
    )
    app.execute(c.WithdrawDispute(dispute_id=dispute_id, reason="found it", actor=desk(CHENGDU)))
    assert app.load([dispute_id])[dispute_id].status is DisputeStatus.WITHDRAWN


def test_a_retried_opening_records_one_dispute(app: Writer, uow: MemoryUnitOfWork) -> None:
    shipped(app)
    first = app.execute(
        c.OpenDispute(
            owner=CHENGDU,
            barcode="B1",
            kind="damaged",
            other_party=YUZHONG,
            statement="wet",
            library=CHENGDU,
            actor=desk(CHENGDU),
            command_id="desk-1",
        )
    )
    events = len(uow.events)
    again = app.execute(
        c.OpenDispute(
            owner=CHENGDU,
            barcode="B1",
            kind="damaged",
            other_party=YUZHONG,
            statement="wet",
            library=CHENGDU,
            actor=desk(CHENGDU),
            command_id="desk-1",
        )
    )
    assert again.replayed and again.outcome == first.outcome
    assert len(uow.events) == events
