"""Member libraries and their loan policies."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.common import LedgerCreated, LedgerEvent
from ledger.domain.errors import InvalidInput, LibraryNotCirculating, UnknownLibrary

#: ``\A``/``\Z`` and ``[0-9]``: ``$`` would let a trailing newline through and ``\d`` any
#: Unicode digit (Arabic-Indic, fullwidth) — neither is a code a desk can print.
CODE_PATTERN = re.compile(r"\A(SC|CQ)-[0-9]{6}(-[A-Z])?\Z")


class Region(StrEnum):
    SICHUAN = "sichuan"
    CHONGQING = "chongqing"


class Level(StrEnum):
    PROVINCIAL = "provincial"
    PREFECTURE = "prefecture"
    COUNTY = "county"


class ReturnMode(StrEnum):
    """What the owner wants when one of its items is returned elsewhere."""

    RETURN_TO_OWNER = "return_to_owner"
    FLOAT = "float"


@dataclass(frozen=True, slots=True)
class LoanPolicy:
    loan_days: int = 30
    renewals_allowed: int = 1
    renewal_days: int = 30
    return_mode: ReturnMode = ReturnMode.RETURN_TO_OWNER

    def __post_init__(self) -> None:
        if not 1 <= self.loan_days <= 365:
            raise InvalidInput("loan_days must be between 1 and 365", field="loan_days")
        if not 0 <= self.renewals_allowed <= 10:
            raise InvalidInput(
                "renewals_allowed must be between 0 and 10", field="renewals_allowed"
            )
        if not 1 <= self.renewal_days <= 365:
            raise InvalidInput("renewal_days must be between 1 and 365", field="renewal_days")
        object.__setattr__(self, "return_mode", ReturnMode(self.return_mode))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "return_mode": str(self.return_mode)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoanPolicy:
        return cls(**data)


def check_code(code: str, *, field: str = "library") -> str:
    if not CODE_PATTERN.match(code):
        raise InvalidInput(
            f"{code!r} is not a library code: expected SC-510100 or CQ-500000 style",
            field=field,
        )
    return code


class Library(Aggregate):
    """A member library. Its id is derived from its code, so codes are unique by construction.

    State (set by the events' ``apply``; eventsourcing would turn class annotations
    into constructor parameters): code, name, region, level, policy, can_circulate, member.
    """

    class Joined(LedgerCreated):
        code: str
        name: str
        region: str
        level: str
        policy: dict[str, Any]
        can_circulate: bool

        def apply(self, library: Library) -> None:
            library.code = self.code
            library.name = self.name
            library.region = Region(self.region)
            library.level = Level(self.level)
            library.policy = LoanPolicy.from_dict(self.policy)
            library.can_circulate = self.can_circulate
            library.member = True

    class PolicyChanged(LedgerEvent):
        policy: dict[str, Any]
        can_circulate: bool

        def apply(self, library: Library) -> None:
            library.policy = LoanPolicy.from_dict(self.policy)
            library.can_circulate = self.can_circulate

    class Left(LedgerEvent):
        reason: str

        def apply(self, library: Library) -> None:
            library.member = False
            library.can_circulate = False

    @classmethod
    def join(
        cls,
        library_id: UUID,
        *,
        code: str,
        name: str,
        region: str,
        level: str,
        policy: LoanPolicy,
        can_circulate: bool,
        **envelope: Any,
    ) -> Library:
        """A library joins the consortium: a real code, a known region and level, a name."""
        check_code(code, field="code")
        try:
            region, level = Region(region), Level(level)
        except ValueError as e:
            raise InvalidInput(str(e), field="region" if "Region" in str(e) else "level") from None
        if not name.strip():
            raise InvalidInput("a library needs a name", field="name")
        return cls._create(
            Library.Joined,
            id=library_id,
            code=code,
            name=name.strip(),
            region=str(region),
            level=str(level),
            policy=policy.as_dict(),
            can_circulate=can_circulate,
            **envelope,
        )

    def change_policy(self, policy: LoanPolicy, can_circulate: bool, **envelope: Any) -> None:
        self.require_member()
        self.trigger_event(
            Library.PolicyChanged,
            policy=policy.as_dict(),
            can_circulate=can_circulate,
            **envelope,
        )

    def leave(self, reason: str, **envelope: Any) -> None:
        self.require_member()
        self.trigger_event(Library.Left, reason=reason, **envelope)

    def require_member(self) -> None:
        if not self.member:
            raise UnknownLibrary(f"{self.code} has left the consortium", field="library")

    def require_circulating(self, field: str = "library") -> None:
        self.require_member()
        if not self.can_circulate:
            raise LibraryNotCirculating(
                f"{self.code} {self.name} is a member but cannot circulate items yet",
                field=field,
            )
