"""Reader identity: the 18-character resident identity number (GB 11643-1999).

A reader shows a resident identity card or a social security card; both carry the same
number, so the document kind never changes who the reader is. The ledger keeps only a
keyed HMAC of the number (to recognise the reader again) and a masked form (to show at
the desk); the number itself is personal data and must not reach events, logs or errors.

python-stdnum's ``stdnum.cn.ric`` supplies the check character, the date split and the
division-code table, but we use those parts rather than its ``validate()``: that ties the
region code to the birth year, and the code records where the number was first issued,
which can be years after birth (a 500xxx Chongqing number of someone born before 1997).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stdnum import numdb
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from ledger.domain.errors import InvalidIdentityNumber

__all__ = [
    "MIN_KEY_BYTES",
    "DocumentKind",
    "IdentityHasher",
    "IdentityNumber",
    "generate_identity_key",
    "parse_identity_number",
]

MIN_KEY_BYTES = 16
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
_HMAC_DOMAIN = b"tongjie-reader-identity-v1\x00"
_SHAPE = re.compile(r"[0-9]{17}[0-9X]")  # not \d: that also matches non-ASCII digits
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]")  # spaces and hyphen/dash lookalikes


class DocumentKind(StrEnum):
    """The card the number was read from; recorded for audit, never part of the identity."""

    RESIDENT_ID = "resident_id"
    SOCIAL_SECURITY_CARD = "social_security_card"


@dataclass(frozen=True, slots=True, repr=False)
class IdentityNumber:
    """A validated number; build it with :func:`parse_identity_number`.

    ``repr``/``str`` give the masked form so a stray log line or traceback cannot leak it.
    """

    value: str
    region_code: str
    birth_date: date

    def masked(self) -> str:
        """First 4 and last 4 characters: enough to compare with a card, no birth date."""
        return f"{self.value[:4]}{'*' * (len(self.value) - 8)}{self.value[-4:]}"

    def __repr__(self) -> str:
        return f"IdentityNumber({self.masked()!r})"

    def __str__(self) -> str:
        return self.masked()


def _shanghai_today() -> date:
    """Today at the consortium (Asia/Shanghai, fixed UTC+8 since 1991 if tzdata is absent)."""
    try:
        zone: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
    except ZoneInfoNotFoundError:
        zone = timezone(timedelta(hours=8), "Asia/Shanghai")
    return datetime.now(zone).date()


def _normalise(raw: str) -> str:
    """Fold full-width input (common from Chinese IMEs), drop separators, upper-case x."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()


@lru_cache(maxsize=8192)
def _is_division_code(code: str) -> bool:
    """True if stdnum's table lists the code for any period, current or abolished."""
    return any("county" in props for _, props in numdb.get("cn/loc").info(code))


def parse_identity_number(raw: str, *, today: date | None = None) -> IdentityNumber:
    """Validate and normalise a number; raise :class:`InvalidIdentityNumber` naming the part.

    Checks run format → checksum → birth date → region, so a mistyped number is reported
    as mistyped rather than as a strange date or place. Messages never echo the number.
    """
    if not isinstance(raw, str):
        raise InvalidIdentityNumber("the identity number must be text", part="format")
    value = _normalise(raw)
    if len(value) != 18:
        raise InvalidIdentityNumber(
            f"an identity number has 18 characters; this one has {len(value)}", part="format"
        )
    if not _SHAPE.fullmatch(value):
        position = next(
            i for i, ch in enumerate(value, 1) if not ("0" <= ch <= "9" or (ch == "X" and i == 18))
        )
        raise InvalidIdentityNumber(
            f"character {position} is not allowed: an identity number is 17 digits "
            "followed by a digit or X",
            part="format",
        )
    expected = ric.calc_check_digit(value)
    if value[-1] != expected:
        raise InvalidIdentityNumber(
            f"check character is '{value[-1]}' but the number's digits require '{expected}'"
            " — the number was probably mistyped",
            part="checksum",
        )
    try:
        born = ric.get_birth_date(value)
    except ValidationError:
        raise InvalidIdentityNumber(
            "characters 7–14 should be the birth date as YYYYMMDD but are not a real calendar date",
            part="birth_date",
        ) from None
    if born > (today or _shanghai_today()):
        raise InvalidIdentityNumber(
            "the birth date in characters 7–14 is in the future", part="birth_date"
        )
    if born < EARLIEST_BIRTH_DATE:
        raise InvalidIdentityNumber(
            "the birth date in characters 7–14 is before 1900, which is not plausible",
            part="birth_date",
        )
    region = value[:6]
    if not _is_division_code(region):
        raise InvalidIdentityNumber(
            "the first six digits are not a current or former administrative division code",
            part="region",
        )
    return IdentityNumber(value=value, region_code=region, birth_date=born)


class IdentityHasher:
    """Keyed hash of a number: the same person gives the same digest, whatever the card.

    A plain hash would not do: 18-digit numbers with a known structure are few enough to
    enumerate, so without a secret key the digest would reveal the number.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray):
            raise TypeError("the identity key must be bytes")
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the identity key must be at least {MIN_KEY_BYTES} bytes")
        self._key = bytes(key)

    def digest(self, number: IdentityNumber) -> str:
        """Hex HMAC-SHA256 of the normalised number, domain-separated from other uses."""
        if not isinstance(number, IdentityNumber):
            raise TypeError("digest() takes an IdentityNumber from parse_identity_number()")
        message = _HMAC_DOMAIN + number.value.encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def generate_identity_key() -> bytes:
    """A fresh 32-byte key for :class:`IdentityHasher`."""
    return secrets.token_bytes(32)
