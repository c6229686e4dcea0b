"""Who may record what on an item: renewals, return claims and unannounced arrivals.

A desk records only what happens at its own desk (``WrongLibrary``); on top of that,
only the libraries a loan or an item concerns may renew it or claim it returned, and
only a missing item can arrive unannounced. Each refusal records nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import pytest

from ledger import commands as c
from ledger.domain.common import Actor
from ledger.domain.disputes import ReturnClaim, return_claim_id
from ledger.domain.errors import (
    DuplicateReturnClaim,
    ItemInTransit,
    ItemNotAvailable,
    ItemWithdrawn,
    NotPermitted,
)
from ledger.domain.items import Status
from tests.helpers import (
    ADMIN,
    CHENGDU,
    JINJIANG,
    MEIGU,
    YUZHONG,
    borrow,
    desk,
    give_back,
    item,
    refused,
    register_item,
    register_reader,
)

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Writer


def _ship(app: Writer, owner: str, barcode: str, to: str) -> UUID:
    sent = app.execute(
        c.Dispatch(owner=owner, barcode=barcode, library=owner, to_library=to, actor=desk(owner))
    )
    return UUID(sent.outcome["transfer_id"])


def lent_away(app: Writer, barcode: str, sequence: int) -> UUID:
    """A Chengdu item shipped to Jinjiang and lent there to a reader of Yuzhong: the owner,
    the lender and the reader's home library are three different libraries (Meigu is none).
    Returns the loan id."""
    register_item(app, CHENGDU, barcode)
    transfer_id = _ship(app, CHENGDU, barcode, JINJIANG)
    app.execute(c.Receive(transfer_id=transfer_id, library=JINJIANG, actor=desk(JINJIANG)))
    reader_id = register_reader(app, sequence, home=YUZHONG)
    loan = borrow(app, CHENGDU, barcode, JINJIANG, reader_id)
    return UUID(loan.outcome["loan_id"])


def _as(party: str) -> tuple[str, Actor]:
    """The desk and key a party records with; the administrator records at Meigu's desk."""
    return (MEIGU, ADMIN) if party == "admin" else (party, desk(party))


# ------------------------------------------------------------------------------ renewals


def test_an_unrelated_desk_cannot_renew_a_loan(app: Writer, uow: MemoryUnitOfWork) -> None:
    loan_id = lent_away(app, "B1", 1)
    error = refused(
        uow,
        NotPermitted,
        lambda: app.execute(c.Renew(loan_id=loan_id, library=MEIGU, actor=desk(MEIGU))),
        field="library",
    )
    assert JINJIANG in error.message and CHENGDU in error.message
    assert item(app, CHENGDU, "B1").loan.renewals == 0


@pytest.mark.parametrize("party", [JINJIANG, CHENGDU, YUZHONG, "admin"])
def test_the_lender_owner_home_library_or_administrator_renews(
    app: Writer, uow: MemoryUnitOfWork, party: str
) -> None:
    loan_id = lent_away(app, "B1", 1)
    at, actor = _as(party)
    result = app.execute(c.Renew(loan_id=loan_id, library=at, actor=actor))
    assert result.outcome["renewals"] == 1
    assert item(app, CHENGDU, "B1").loan.renewals == 1
    assert uow.events[-1].library == at


def test_the_permission_is_checked_before_the_lenders_policy(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
    loan_id = lent_away(app, "B1", 1)  # Jinjiang allows one renewal
    app.execute(c.Renew(loan_id=loan_id, library=JINJIANG, actor=desk(JINJIANG)))
    refused(
        uow,
        NotPermitted,
        lambda: app.execute(c.Renew(loan_id=loan_id, library=MEIGU, actor=desk(MEIGU))),
    )


# ------------------------------------------------------------------------- return claims


def _claim(app: Writer, barcode: str, at: str, actor: Actor, returned_at: str) -> Any:
    return app.execute(
        c.ClaimReturned(
            owner=CHENGDU,
            barcode=barcode,
            library=at,
            returned_at=returned_at,
            statement="the reader says it went into the book drop",
            actor=actor,
        )
    )


def test_an_unrelated_desk_cannot_claim_a_return(app: Writer, uow: MemoryUnitOfWork) -> None:
    # Lent by its owner Chengdu; the reader says it went back at Yuzhong.
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    loan_id = UUID(borrow(app, CHENGDU, "B1", CHENGDU, reader_id).outcome["loan_id"])
    error = refused(
        uow,
        NotPermitted,
        lambda: _claim(app, "B1", JINJIANG, desk(JINJIANG), YUZHONG),
        field="library",
    )
    assert YUZHONG in error.message
    # Naming itself as the place of return does not make a desk a party either.
    refused(uow, NotPermitted, lambda: _claim(app, "B1", JINJIANG, desk(JINJIANG), MEIGU))
    # The loan's one claim is still free for the libraries concerned.
    _claim(app, "B1", YUZHONG, desk(YUZHONG), YUZHONG)
    claim = app.load([return_claim_id(loan_id)])[return_claim_id(loan_id)]
    assert isinstance(claim, ReturnClaim)
    assert (claim.recorded_at_desk, claim.returned_at) == (YUZHONG, YUZHONG)
    # Once it is taken, an unrelated desk still learns only that it may not.
    refused(uow, NotPermitted, lambda: _claim(app, "B1", JINJIANG, desk(JINJIANG), YUZHONG))
    refused(uow, DuplicateReturnClaim, lambda: _claim(app, "B1", CHENGDU, desk(CHENGDU), YUZHONG))


@pytest.mark.parametrize("party", [JINJIANG, CHENGDU, YUZHONG, "admin"])
def test_the_lender_owner_place_of_return_or_administrator_claims(
    app: Writer, uow: MemoryUnitOfWork, party: str
) -> None:
    # Owned by Chengdu, lent by Jinjiang; the reader names Yuzhong; Meigu has no part.
    loan_id = lent_away(app, "B1", 1)
    at, actor = _as(party)
    result = _claim(app, "B1", at, actor, YUZHONG)
    assert result.outcome["claim_id"] == str(return_claim_id(loan_id))
    assert (result.outcome["lending_library"], result.outcome["returned_at"]) == (
        JINJIANG,
        YUZHONG,
    )
    assert item(app, CHENGDU, "B1").status is Status.ON_LOAN  # a claim changes no item


# ------------------------------------------------------------------- unannounced arrivals


def _arrives(app: Writer, barcode: str, at: str, owner: str = CHENGDU) -> Any:
    return app.execute(
        c.ReceiveUnannounced(owner=owner, barcode=barcode, library=at, actor=desk(at))
    )


def test_an_item_on_shelf_elsewhere_cannot_arrive_unannounced(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
    register_item(app, CHENGDU, "B1")
    error = refused(uow, ItemNotAvailable, lambda: _arrives(app, "B1", YUZHONG), field="barcode")
    assert f"on shelf at {CHENGDU}" in error.message
    assert (item(app, CHENGDU, "B1").status, item(app, CHENGDU, "B1").location) == (
        Status.ON_SHELF,
        CHENGDU,
    )
    # Nor one floated to another library's shelf, not even at its owner.
    reader_id = register_reader(app, 1)
    register_item(app, JINJIANG, "J1")
    borrow(app, JINJIANG, "J1", JINJIANG, reader_id)
    give_back(app, JINJIANG, "J1", YUZHONG)  # Jinjiang floats: it stays on Yuzhong's shelf
    assert (item(app, JINJIANG, "J1").status, item(app, JINJIANG, "J1").location) == (
        Status.ON_SHELF,
        YUZHONG,
    )
    error = refused(uow, ItemNotAvailable, lambda: _arrives(app, "J1", JINJIANG, owner=JINJIANG))
    assert f"on shelf at {YUZHONG}" in error.message


def test_an_item_on_loan_or_withdrawn_cannot_arrive_unannounced(
    app: Writer, uow: MemoryUnitOfWork
) -> None:
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B1")
    borrow(app, CHENGDU, "B1", CHENGDU, reader_id)
    refused(uow, ItemNotAvailable, lambda: _arrives(app, "B1", YUZHONG))
    register_item(app, CHENGDU, "B2")
    app.execute(
        c.Withdraw(
            owner=CHENGDU, barcode="B2", reason="worn out", actor=desk(CHENGDU), library=CHENGDU
        )
    )
    refused(uow, ItemWithdrawn, lambda: _arrives(app, "B2", YUZHONG))


def test_a_missing_item_arrives_unannounced(app: Writer, uow: MemoryUnitOfWork) -> None:
    # In transit to Yuzhong, it turns up at Jinjiang (at Yuzhong it is received instead).
    register_item(app, CHENGDU, "B1")
    _ship(app, CHENGDU, "B1", YUZHONG)
    refused(uow, ItemInTransit, lambda: _arrives(app, "B1", YUZHONG))
    _arrives(app, "B1", JINJIANG)
    assert item(app, CHENGDU, "B1").location == JINJIANG
    # Waiting at Yuzhong to go home, it turns up at its owner.
    reader_id = register_reader(app, 1)
    register_item(app, CHENGDU, "B2")
    borrow(app, CHENGDU, "B2", CHENGDU, reader_id)
    give_back(app, CHENGDU, "B2", YUZHONG)
    assert item(app, CHENGDU, "B2").status is Status.AWAITING_TRANSFER
    _arrives(app, "B2", CHENGDU)
    assert (item(app, CHENGDU, "B2").status, item(app, CHENGDU, "B2").location) == (
        Status.ON_SHELF,
        CHENGDU,
    )
    # Declared lost, it turns up at Yuzhong.
    register_item(app, CHENGDU, "B3")
    app.execute(
        c.DeclareLost(
            owner=CHENGDU, barcode="B3", reason="not on shelf", library=CHENGDU, actor=desk(CHENGDU)
        )
    )
    _arrives(app, "B3", YUZHONG)
    assert (item(app, CHENGDU, "B3").status, item(app, CHENGDU, "B3").location) == (
        Status.ON_SHELF,
        YUZHONG,
    )
