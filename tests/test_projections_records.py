"""The event log's decoders give what eventsourcing's mapper gives, for every event class.

Every event class of every aggregate in ``ledger.domain`` is found by reflection, an
instance is filled with values of its annotated types (optional fields both set and
unset), stored with eventsourcing's own mapper, and decoded by it, by the fast record
decoder (``decode_state``) and by the event log's mapper (``ledger.eventlog.MAPPER``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
import typing
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

import ledger.domain
from ledger.eventlog import MAPPER as LOG_MAPPER
from ledger.eventlog import TRANSCODED, decode_state, short_topic
from ledger.write.postgres import EventStore

#: The ledger's mapper, without a database: the writer's store registers eventsourcing's
#: default transcodings (checked below), so an in-memory application maps the same.
MAPPER = Application().mapper


def event_classes() -> list[type]:
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(ledger.domain.__path__):
        module = importlib.import_module(f"ledger.domain.{info.name}")
        for _, aggregate in inspect.getmembers(module, inspect.isclass):
            if not issubclass(aggregate, Aggregate) or aggregate.__module__ != module.__name__:
                continue
            for _, member in inspect.getmembers(aggregate, inspect.isclass):
                if issubclass(member, Aggregate.Event) and member.__qualname__.startswith(
                    aggregate.__name__ + "."
                ):
                    found[f"{member.__module__}:{member.__qualname__}"] = member
    return [found[k] for k in sorted(found)]


def sample(kind: Any, filled: bool) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return sample(options[0], filled) if filled else None
    if origin is not None:
        kind = origin
    samples: dict[Any, Any] = {
        str: "值 x",
        int: 3,
        bool: True,
        float: 1.5,
        datetime: datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC),
        Decimal: Decimal("12.30"),
        dict: {"due_at": "2026-06-01T23:59:59+08:00", "when": datetime.now(UTC), "n": [1, 2]},
        list: [uuid4(), "b"],
    }
    if kind in samples:
        return samples[kind]
    if getattr(kind, "__name__", "") == "UUID":
        return uuid4()
    raise AssertionError(f"no sample for {kind!r}")


CLASSES = event_classes()


def test_reflection_finds_the_ledgers_events() -> None:
    assert EventStore.register_transcodings is Application.register_transcodings
    assert set(MAPPER.transcoder.names) == set(TRANSCODED)  # type: ignore[attr-defined]
    assert set(LOG_MAPPER.transcoder.names) == set(TRANSCODED)  # type: ignore[attr-defined]
    assert not LOG_MAPPER.cipher and not LOG_MAPPER.compressor
    names = {short_topic(f"{c.__module__}:{c.__qualname__}") for c in CLASSES}
    assert {"Item.Borrowed", "Item.Corrected", "Reader.Forgotten", "Library.Left"} <= names
    assert len(names) >= 21


@pytest.mark.parametrize("filled", [True, False], ids=["optional-set", "optional-none"])
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_decoder_matches_the_mapper(cls: type, filled: bool) -> None:
    hints = typing.get_type_hints(cls)
    values = {
        name: sample(kind, filled)
        for name, kind in hints.items()
        if name not in ("originator_id", "originator_version")
        and not name.startswith("_")
        and typing.get_origin(kind) is not typing.ClassVar
        and kind is not typing.ClassVar
    }
    event = object.__new__(cls)
    event.__dict__.update(values, originator_id=uuid4(), originator_version=2)
    stored = MAPPER.to_stored_event(event)
    expected = dict(vars(MAPPER.to_domain_event(stored)))
    del expected["originator_id"], expected["originator_version"]
    decoded = decode_state(stored.state)
    assert decoded == expected
    assert {k: type(v) for k, v in decoded.items()} == {k: type(v) for k, v in expected.items()}
    event_back = LOG_MAPPER.to_domain_event(stored)
    assert type(event_back) is cls
    assert vars(event_back) == vars(MAPPER.to_domain_event(stored))
    assert {k: type(v) for k, v in vars(event_back).items()} == {
        k: type(v) for k, v in vars(MAPPER.to_domain_event(stored)).items()
    }
    assert LOG_MAPPER.to_stored_event(event) == stored
