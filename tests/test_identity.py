"""Reader identity numbers: validation, masking and keyed hashing (no database)."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import numdb
from stdnum.cn import ric

from ledger.domain.errors import InvalidIdentityNumber
from ledger.domain.identity import (
    DocumentKind,
    IdentityHasher,
    IdentityNumber,
    generate_identity_key,
    parse_identity_number,
)

TODAY = date(2026, 11, 25)
KEY = b"k" * 32
MASKED_SHAPE = re.compile(r"[0-9]{4}\*{10}[0-9]{3}[0-9X]")

# Real codes: current (Beijing Chaoyang, Chengdu Jinjiang, Chongqing Yuzhong, Shenzhen Futian)
# and abolished (Beijing Chongwen [-2010], Chongqing's Sichuan-era Yuzhong 510202 [-1997]).
REGION_CODES = ["110105", "510104", "500103", "440304", "110103", "510202"]


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 written out from GB 11643-1999, independent of stdnum."""
    weights = [pow(2, 17 - i, 11) for i in range(17)]
    total = sum(w * int(d) for w, d in zip(weights, first17, strict=True))
    return "10X98765432"[total % 11]


def make(region: str, born: date, sequence: int = 123) -> str:
    body = f"{region}{born:%Y%m%d}{sequence:03d}"
    return body + check_char(body)


def parse(raw: str) -> IdentityNumber:
    return parse_identity_number(raw, today=TODAY)


def rejected(raw: str, part: str) -> InvalidIdentityNumber:
    with pytest.raises(InvalidIdentityNumber) as caught:
        parse(raw)
    error = caught.value
    assert error.part == part, error.message
    assert error.field == "number"
    assert error.code == "invalid-identity-number"
    return error


def county_periods(code: str) -> str:
    return dict(numdb.get("cn/loc").info(code)[1:])[code[2:]]["county"]


# --- valid numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "born"),
    [
        ("360426199101010071", "360426", date(1991, 1, 1)),  # stdnum's own example
        ("11010519491231002X", "110105", date(1949, 12, 31)),  # GB 11643-1999's example
        ("11010519491231002x", "110105", date(1949, 12, 31)),
        (" 110105 19491231 002X ", "110105", date(1949, 12, 31)),
        ("110105-19491231-002X", "110105", date(1949, 12, 31)),
        ("１１０１０５１９４９１２３１００２Ｘ", "110105", date(1949, 12, 31)),  # full-width IME
    ],
)
def test_valid_numbers_are_normalised(raw: str, region: str, born: date) -> None:
    number = parse(raw)
    assert len(number.value) == 18
    assert number.value.isascii() and number.value == number.value.upper()
    assert number.region_code == region
    assert number.birth_date == born


def test_number_ending_in_x() -> None:
    assert check_char("11010519491231002") == "X"
    assert parse("11010519491231002X").value.endswith("X")


def test_chongqing_number_of_someone_born_before_1997_is_valid() -> None:
    raw = make("500101", date(1990, 1, 1))
    assert raw == "50010119900101123X"
    assert county_periods("500101").startswith("[1997-")
    assert not ric.is_valid(raw)  # why we do not call stdnum's validate()
    number = parse(raw)
    assert number.region_code == "500101"
    assert number.birth_date == date(1990, 1, 1)


@pytest.mark.parametrize("code", ["110103", "510202"])
def test_abolished_division_code_is_accepted(code: str) -> None:
    assert re.search(r"-\d{4}\]", county_periods(code))  # the table gives it an end year
    assert parse(make(code, date(2015, 6, 1))).region_code == code


def test_birth_date_boundaries() -> None:
    assert parse(make("110105", TODAY)).birth_date == TODAY
    assert parse(make("110105", date(1900, 1, 1))).birth_date == date(1900, 1, 1)
    assert parse(make("110105", date(2000, 2, 29))).birth_date == date(2000, 2, 29)


def test_today_defaults_to_the_consortium_date() -> None:
    assert parse_identity_number("11010519491231002X").birth_date == date(1949, 12, 31)


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "11010519491231002", "11010519491231002X0", "1101051949123100X2", "11O10519491231002X"],
)
def test_format(raw: str) -> None:
    rejected(raw, "format")


def test_non_text_is_a_format_error() -> None:
    with pytest.raises(InvalidIdentityNumber) as caught:
        parse_identity_number(110105194912310020)  # type: ignore[arg-type]
    assert caught.value.part == "format"


def test_non_ascii_digits_are_a_format_error() -> None:
    rejected("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", "format")  # Arabic-Indic digits


def test_checksum_message_names_both_characters() -> None:
    valid = make("110105", date(1980, 5, 17), 1)
    assert valid[-1] == "7"
    error = rejected(valid[:-1] + "X", "checksum")
    assert error.message == (
        "check character is 'X' but the number's digits require '7'"
        " — the number was probably mistyped"
    )


@pytest.mark.parametrize(
    "born", ["19900230", "19901301", "19900001", "19000229", "00000101", "19900431"]
)
def test_unreal_birth_date(born: str) -> None:
    body = f"110105{born}123"
    rejected(body + check_char(body), "birth_date")


def test_future_birth_date() -> None:
    raw = make("110105", date(2026, 11, 26))
    rejected(raw, "birth_date")
    assert parse_identity_number(raw, today=date(2026, 11, 26)).birth_date == date(2026, 11, 26)


def test_birth_date_before_1900() -> None:
    rejected(make("110105", date(1899, 12, 31)), "birth_date")


@pytest.mark.parametrize("code", ["000000", "999999", "119999", "830000"])
def test_never_existing_region(code: str) -> None:
    rejected(make(code, date(1990, 1, 1)), "region")


def test_region_checked_against_stdnum_without_crashing() -> None:
    # 11xxxx with an unknown county: stdnum's own is_valid() raises KeyError here.
    raw = make("119999", date(1990, 1, 1))
    with pytest.raises(KeyError):
        ric.is_valid(raw)
    rejected(raw, "region")


# --- privacy -------------------------------------------------------------------------------


def test_masked_form_hides_the_birth_date() -> None:
    number = parse("11010519491231002X")
    assert number.masked() == "1101**********002X"
    assert "19491231" not in number.masked()
    for shown in (repr(number), str(number), f"{number}", f"{number!r}"):
        assert "11010519491231002X" not in shown
        assert "19491231" not in shown
        assert "1101**********002X" in shown


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002X0",  # format
        "110105194912310027",  # checksum
        make("110105", date(2030, 1, 1)),  # birth_date
        "11010519490230" + "123" + check_char("11010519490230123"),  # birth_date
        make("999999", date(1990, 1, 1)),  # region
    ],
)
def test_error_messages_do_not_contain_the_number(raw: str) -> None:
    with pytest.raises(InvalidIdentityNumber) as caught:
        parse(raw)
    for text in (str(caught.value), caught.value.message, repr(caught.value)):
        assert raw not in text
        assert raw[:17] not in text


# --- hashing -------------------------------------------------------------------------------


def test_same_person_via_either_document_is_the_same_reader() -> None:
    hasher = IdentityHasher(KEY)
    typed = {
        DocumentKind.RESIDENT_ID: "11010519491231002X",
        DocumentKind.SOCIAL_SECURITY_CARD: "110105 19491231 002x",
    }
    digests = {kind: hasher.digest(parse(raw)) for kind, raw in typed.items()}
    assert set(DocumentKind) == set(digests)
    assert len(set(digests.values())) == 1


def test_digest_is_domain_separated_hmac_sha256() -> None:
    expected = hmac.new(
        KEY, b"tongjie-reader-identity-v1\x0011010519491231002X", hashlib.sha256
    ).hexdigest()
    assert IdentityHasher(KEY).digest(parse("11010519491231002X")) == expected


def test_different_keys_and_numbers_give_different_digests() -> None:
    number = parse("11010519491231002X")
    assert IdentityHasher(KEY).digest(number) != IdentityHasher(b"q" * 32).digest(number)
    other = parse("360426199101010071")
    assert IdentityHasher(KEY).digest(number) != IdentityHasher(KEY).digest(other)


def test_short_key_refused() -> None:
    with pytest.raises(ValueError):
        IdentityHasher(b"x" * 15)
    IdentityHasher(b"x" * 16)


def test_digest_refuses_raw_strings() -> None:
    with pytest.raises(TypeError):
        IdentityHasher(KEY).digest("11010519491231002X")  # type: ignore[arg-type]


def test_generated_keys() -> None:
    first, second = generate_identity_key(), generate_identity_key()
    assert len(first) == 32 and first != second
    IdentityHasher(first)


# --- properties ----------------------------------------------------------------------------

valid_numbers = st.builds(
    make,
    st.sampled_from(REGION_CODES),
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.integers(min_value=0, max_value=999),
)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_independent_check_char_agrees_with_stdnum(first17: str) -> None:
    assert ric.calc_check_digit(first17 + "0") == check_char(first17)


@given(valid_numbers)
def test_any_valid_number_parses(raw: str) -> None:
    number = parse(raw)
    assert number.value == raw
    assert number.region_code == raw[:6]
    assert f"{number.birth_date:%Y%m%d}" == raw[6:14]
    assert MASKED_SHAPE.fullmatch(number.masked())
    assert number.masked()[:4] == raw[:4] and number.masked()[-4:] == raw[-4:]


@given(valid_numbers, st.integers(min_value=0, max_value=17), st.data())
def test_any_single_substitution_is_rejected(raw: str, position: int, data: st.DataObject) -> None:
    allowed = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from([c for c in allowed if c != raw[position]]))
    rejected(raw[:position] + replacement + raw[position + 1 :], "checksum")


@pytest.mark.parametrize("raw", ["11010519491231002X", "360426199101010071"])
def test_every_single_substitution_is_rejected(raw: str) -> None:
    for position in range(18):
        for replacement in "0123456789X" if position == 17 else "0123456789":
            if replacement != raw[position]:
                rejected(raw[:position] + replacement + raw[position + 1 :], "checksum")
