"""Every topic the read side handles names a real event class; every field it reads exists.

Projections and the read-side features find events by topic strings and read their
values by name, so renaming an event class or a field without updating them breaks
nothing loudly: a handler is simply never called again, or reads a key that is never
there. This test makes that loud. No database: the code is imported and read.

* **The catalogue**: every event class nested in an aggregate of ``ledger.domain``
  (walked, not listed), by short topic (``Item.Borrowed``), with its dataclass fields —
  what is stored (``originator_id``, ``timestamp``… from eventsourcing's bases, the
  envelope from ``LedgerEvent``, its own annotations).
* **Projections**: ``ledger.projections.REGISTRY`` gives each projection's handlers by
  topic and its ``touches``. Each topic must be in the catalogue. Each handler's source
  is walked (and the module functions it hands the record or its ``data`` to): a
  ``data["f"]`` must be a field of the handled event, a ``data.get("f")`` or ``"f" in
  data`` too; keys read inside ``Item.Corrected``'s ``changes`` must be correctable
  (``ledger.domain.items.CORRECTABLE``); attributes of the record must exist on the
  record class the handler is annotated with. ``touches`` gets every topic of its
  projection, narrowed by ``if r.topic == …`` / ``r.topic.startswith(…)`` guards.
* **Read-side features** (``ledger.disputes``, ``ledger.projections.history``…) work on
  decoded events: ``recorded.event.f``, ``getattr(event, "f", …)``, ``vars(event).get("f")``
  must name a field of the events that can reach there. Recorded events come from
  functions and methods annotated to return ``Recorded`` (``log.losses()`` of a
  parameter annotated ``EventLog``); the events are narrowed by ``isinstance`` and by
  the topic constants the reading function uses, two calls deep (``EventLog.losses`` →
  ``read_losses`` → ``LOSS_TOPIC``: ``Item.DeclaredLost`` only).
* **Named registries**: the keys of ``ledger.disputes.evidence.PROOF`` are event class
  names; ``ledger.projections.history.ENVELOPE`` are fields of every event (and
  ``_INTERNAL`` of some); ``ledger.domain.disputes.LIBRARY_FIELDS`` fields of item events.
* **Topic literals**: every string in ``ledger`` (outside the domain) and ``web`` that
  is shaped like a topic — ``"Item.Borrowed"``, ``"ledger.domain.items:Item.Found"``, a
  prefix such as ``"ledger.domain.items:Item."`` or ``"ledger.domain.disputes:%"``, a
  module constant built from them — must name (or begin) a real one.

Floors on the counts keep a moved registry or a changed record API from turning this
into a test that checks nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re
import textwrap
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.utils import get_topic, resolve_topic

ROOT = Path(__file__).resolve().parent.parent

#: Where the read side lives: its modules are imported and their functions walked.
READ_SIDE = ("ledger.eventlog", "ledger.projections", "ledger.disputes", "ledger.reports")
#: Where topic-shaped string literals are looked for (source only, nothing imported).
LITERAL_SCAN = ("ledger", "web")
LITERAL_SCAN_SKIP = ("ledger.domain",)  # where the events are defined, by class

#: Keys read inside a field that is itself a mapping, and the registry of valid keys.
NESTED_KEYS: dict[tuple[str, str], Callable[[], frozenset[str]]] = {
    ("Item.Corrected", "changes"): lambda: (
        importlib.import_module("ledger.domain.items").CORRECTABLE
    ),
}

#: Floors: fewer than this means a registry moved or the record API changed, and the
#: checks below would pass by checking nothing.
MIN_EVENT_CLASSES = 25
MIN_PROJECTION_TOPICS = 20  # distinct (projection, topic) pairs: about 60 today
MIN_HANDLER_FIELD_READS = 40
MIN_EVENT_OBJECT_READS = 20  # attribute reads on decoded events in read-side features
MIN_TOPIC_LITERALS = 60


# ------------------------------------------------------------------ the catalogue


def event_catalogue(package: str = "ledger.domain") -> dict[str, type]:
    """Every stored event class of the domain, by short topic (``Item.Borrowed``)."""
    events: dict[str, type] = {}
    for module in _modules(package):
        for aggregate in vars(module).values():
            if not (
                inspect.isclass(aggregate)
                and issubclass(aggregate, Aggregate)
                and aggregate.__module__ == module.__name__
            ):
                continue
            for name, cls in vars(aggregate).items():
                # eventsourcing gives every aggregate an ``Event`` and a ``Created`` base
                if name in ("Event", "Created") or not inspect.isclass(cls):
                    continue
                if issubclass(cls, DomainEvent):
                    events[get_topic(cls).rpartition(":")[2]] = cls
    return events


def _topic(cls: type) -> str:
    """eventsourcing's topic of a class (``get_topic`` without its registering)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def fields_of(cls: type) -> frozenset[str]:
    """The names an event stores: its dataclass fields, bases included."""
    return frozenset(f.name for f in dataclasses.fields(cls))


def _modules(name: str) -> Iterator[ModuleType]:
    """The module, and every module under it when it is a package."""
    root = importlib.import_module(name)
    yield root
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=name + "."):
        yield importlib.import_module(info.name)


# ------------------------------------------------------------------ findings


@dataclass
class Report:
    """What a check saw, and what was wrong."""

    problems: list[str] = field(default_factory=list)
    topics: set[tuple[str, str]] = field(default_factory=set)  # (owner, topic) checked
    reads: list[str] = field(default_factory=list)  # "where: field", one per read checked

    def merge(self, other: Report) -> Report:
        self.problems += other.problems
        self.topics |= other.topics
        self.reads += other.reads
        return self


def _where(func: Callable[..., Any], node: ast.AST, offset: int) -> str:
    return f"{func.__module__}.{func.__qualname__} line {getattr(node, 'lineno', 0) + offset}"


def _parse_function(func: Callable[..., Any]) -> tuple[ast.FunctionDef, int] | None:
    """The function's AST and the offset of its lines in its file; None for a lambda or
    something that is not Python source."""
    func = inspect.unwrap(func)
    if not inspect.isfunction(func) or func.__name__ == "<lambda>":
        return None
    lines, start = inspect.getsourcelines(func)
    node = ast.parse(textwrap.dedent("".join(lines))).body[0]
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    return node, start - 1  # type: ignore[return-value]


def _const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _resolve_callable(func: Callable[..., Any], node: ast.expr) -> Callable[..., Any] | None:
    """A plain function the call names, through the caller's globals: ``f`` or ``mod.f``."""
    namespace = func.__globals__  # type: ignore[attr-defined]
    target: Any = None
    if isinstance(node, ast.Name):
        target = namespace.get(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        target = getattr(namespace.get(node.value.id), node.attr, None)
    return target if inspect.isfunction(target) else None


# ------------------------------------------------------------------ projection handlers


@dataclass
class _Scope:
    records: set[str]
    data: set[str] = field(default_factory=set)
    field_values: dict[str, str] = field(default_factory=dict)  # name → field it holds


class HandlerChecker:
    """Walks a handler (and the module functions it passes the record to) for reads of
    the event's values, each checked against the events that can reach it."""

    def __init__(self, catalogue: Mapping[str, type]) -> None:
        self.catalogue = catalogue
        self.fields = {topic: fields_of(cls) for topic, cls in catalogue.items()}
        self.report = Report()
        self._seen: set[tuple[Any, str, str, frozenset[str]]] = set()

    # entry point
    def check(
        self, owner: str, func: Callable[..., Any], topics: Iterable[str], *, handled: bool = True
    ) -> None:
        """``handled``: the topics are the ones ``func`` is registered for (else they are
        the projection's, already checked with its handlers)."""
        topics = frozenset(topics)
        for topic in sorted(topics) if handled else ():
            self.report.topics.add((owner, topic))
            if topic not in self.catalogue:
                self.report.problems.append(
                    f"{owner}: handles topic {topic!r}, which names no event class"
                    f" (known: {', '.join(sorted(self.catalogue))})"
                )
        known = frozenset(t for t in topics if t in self.catalogue)
        record_class = self._record_class(func)
        self._function(func, "record", "", known, record_class)

    @staticmethod
    def _record_class(func: Callable[..., Any]) -> type | None:
        """The class the handler's first parameter is annotated with, when it resolves."""
        try:
            hints = typing.get_type_hints(func)
        except Exception:
            return None
        params = list(inspect.signature(func).parameters)
        hint = hints.get(params[0]) if params else None
        return hint if inspect.isclass(hint) else None

    def _function(
        self,
        func: Callable[..., Any],
        role: str,  # "record" or "data"
        param: str,
        topics: frozenset[str],
        record_class: type | None,
    ) -> None:
        parsed = _parse_function(func)
        if parsed is None:
            return
        node, offset = parsed
        params = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
        name = param or (params[0] if params else "")
        key = (func, role, name, topics)
        if not name or key in self._seen:
            return
        self._seen.add(key)
        scope = _Scope(records={name} if role == "record" else set())
        if role == "data":
            scope.data.add(name)
        walker = _HandlerWalk(self, func, offset, scope, record_class)
        walker.block(node.body, topics)

    # the checks
    def read(self, where: str, name: str, topics: frozenset[str], *, required: bool) -> None:
        if not topics:
            return  # under a guard no handled topic passes: nothing reaches here
        self.report.reads.append(f"{where}: {name}")
        missing = sorted(t for t in topics if name not in self.fields[t])
        if required and missing:
            self.report.problems.append(
                f"{where}: reads [{name!r}] but {', '.join(missing)} has no field {name!r}"
            )
        elif not required and len(missing) == len(topics):
            self.report.problems.append(
                f"{where}: looks up {name!r}, a field of none of {', '.join(sorted(topics))}"
            )

    def nested(self, where: str, outer: str, key: str, topics: frozenset[str]) -> None:
        for topic in sorted(topics):
            registry = NESTED_KEYS.get((topic, outer))
            if registry is not None and key not in registry():
                self.report.problems.append(
                    f"{where}: reads {outer}[{key!r}] of {topic}, but {key!r} is not"
                    f" among its keys ({', '.join(sorted(registry()))})"
                )

    def dynamic(self, where: str, what: str) -> None:
        self.report.problems.append(
            f"{where}: reads the event's values by a computed key ({what}); use literal "
            "field names so this test can check them"
        )


class _HandlerWalk:
    def __init__(
        self,
        checker: HandlerChecker,
        func: Callable[..., Any],
        offset: int,
        scope: _Scope,
        record_class: type | None,
    ) -> None:
        self.checker = checker
        self.func = func
        self.offset = offset
        self.scope = scope
        self.record_class = record_class

    def where(self, node: ast.AST) -> str:
        return _where(self.func, node, self.offset)

    # statements, with topic guards narrowing what reaches each branch
    def block(self, statements: list[ast.stmt], topics: frozenset[str]) -> None:
        for statement in statements:
            if isinstance(statement, ast.If):
                then, other = self.guard(statement.test, topics)
                self.expressions(statement.test, topics)
                self.block(statement.body, then)
                self.block(statement.orelse, other)
                if _exits(statement.body) and not _exits(statement.orelse):
                    topics = other
                elif statement.orelse and _exits(statement.orelse):
                    topics = then
                continue
            self.bind(statement)
            for name, value in ast.iter_fields(statement):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    self.block(value, topics)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.AST):
                            self.expressions(item, topics)
                elif isinstance(value, ast.AST) and name != "body":
                    self.expressions(value, topics)

    def guard(
        self, test: ast.expr, topics: frozenset[str]
    ) -> tuple[frozenset[str], frozenset[str]]:
        """The topics for which the test can be true, and those for which it can be false."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            then, other = self.guard(test.operand, topics)
            return other, then
        if (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and self.is_topic(test.left)
            and isinstance(test.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn)
        ):
            right = test.comparators[0]
            values = (
                {_const_str(right)}
                if _const_str(right) is not None
                else {_const_str(e) for e in getattr(right, "elts", ())}
            )
            if None in values or not values:
                return topics, topics
            match = frozenset(t for t in topics if t in values)
            if isinstance(test.ops[0], ast.Eq | ast.In):
                return match, topics - match
            return topics - match, match
        if (
            isinstance(test, ast.Call)
            and isinstance(test.func, ast.Attribute)
            and test.func.attr == "startswith"
            and self.is_topic(test.func.value)
            and (prefix := _const_str(test.args[0] if test.args else None)) is not None
        ):
            match = frozenset(t for t in topics if t.startswith(prefix))
            return match, topics - match
        return topics, topics

    def is_topic(self, node: ast.expr) -> bool:
        return self.is_record(getattr(node, "value", None)) and getattr(node, "attr", "") == (
            "topic"
        )

    def is_record(self, node: ast.AST | None) -> bool:
        return isinstance(node, ast.Name) and node.id in self.scope.records

    def is_data(self, node: ast.AST | None) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.scope.data
        return (
            isinstance(node, ast.Attribute) and node.attr == "data" and self.is_record(node.value)
        )

    def field_value(self, node: ast.AST | None) -> str | None:
        """The field whose value the expression is: ``data["f"]``, ``data.get("f")``, a
        name bound to one."""
        if isinstance(node, ast.Name):
            return self.scope.field_values.get(node.id)
        if isinstance(node, ast.Subscript) and self.is_data(node.value):
            return _const_str(node.slice)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and self.is_data(node.func.value)
        ):
            return _const_str(node.args[0] if node.args else None)
        return None

    def bind(self, statement: ast.stmt) -> None:
        """Names that hold the record, its data, or one field's value."""
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                self._bind_name(target.id, value)

    def _bind_name(self, name: str, value: ast.expr) -> None:
        self.scope.records.discard(name)
        self.scope.data.discard(name)
        self.scope.field_values.pop(name, None)
        if self.is_record(value):
            self.scope.records.add(name)
        elif self.is_data(value):
            self.scope.data.add(name)
        elif (outer := self.field_value(value)) is not None:
            self.scope.field_values[name] = outer

    # reads in expressions
    def expressions(self, root: ast.AST, topics: frozenset[str]) -> None:
        checker = self.checker
        for node in ast.walk(root):
            if isinstance(node, ast.NamedExpr):
                self._bind_name(node.target.id, node.value)
            if isinstance(node, ast.Subscript):
                if self.is_data(node.value):
                    key = _const_str(node.slice)
                    if key is None:
                        checker.dynamic(self.where(node), ast.unparse(node))
                    else:
                        checker.read(self.where(node), key, topics, required=True)
                elif (outer := self.field_value(node.value)) is not None and (
                    key := _const_str(node.slice)
                ) is not None:
                    checker.nested(self.where(node), outer, key, topics)
            elif isinstance(node, ast.Call):
                self.call(node, topics)
            elif isinstance(node, ast.Compare):
                for op, right in zip(node.ops, node.comparators, strict=True):
                    key = _const_str(node.left)
                    if not isinstance(op, ast.In | ast.NotIn) or key is None:
                        continue
                    if self.is_data(right):
                        checker.read(self.where(node), key, topics, required=False)
                    elif (outer := self.field_value(right)) is not None:
                        checker.nested(self.where(node), outer, key, topics)
            elif isinstance(node, ast.Attribute) and self.is_record(node.value):
                self.record_attribute(node)

    def record_attribute(self, node: ast.Attribute) -> None:
        cls = self.record_class
        if cls is None:
            return
        known = set(getattr(cls, "__slots__", ())) | set(dir(cls))
        known |= set(getattr(cls, "__annotations__", {}))
        if node.attr not in known:
            self.checker.report.problems.append(
                f"{self.where(node)}: reads .{node.attr} of the record, which"
                f" {cls.__module__}.{cls.__qualname__} does not have"
            )

    def call(self, node: ast.Call, topics: frozenset[str]) -> None:
        checker = self.checker
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get":
            key = _const_str(node.args[0] if node.args else None)
            if self.is_data(func.value):
                if key is None:
                    checker.dynamic(self.where(node), ast.unparse(node))
                else:
                    checker.read(self.where(node), key, topics, required=False)
            elif (outer := self.field_value(func.value)) is not None and key is not None:
                checker.nested(self.where(node), outer, key, topics)
            return
        callee = _resolve_callable(self.func, func)
        if callee is None:
            return
        try:
            bound = inspect.signature(callee).bind_partial(
                *node.args, **{k.arg: k.value for k in node.keywords if k.arg is not None}
            )
        except TypeError:
            return
        for param, arg in bound.arguments.items():
            if not isinstance(arg, ast.AST):
                continue
            if self.is_record(arg):
                checker._function(callee, "record", param, topics, self.record_class)
            elif self.is_data(arg):
                checker._function(callee, "data", param, topics, self.record_class)


def _exits(statements: list[ast.stmt]) -> bool:
    return bool(statements) and isinstance(statements[-1], ast.Return | ast.Raise)


def check_projections(projections: Iterable[Any], catalogue: Mapping[str, type]) -> Report:
    """Each projection's handlers (by topic) and its ``touches`` (every topic it has)."""
    checker = HandlerChecker(catalogue)
    for projection in projections:
        for topic, handler in projection.handlers.items():
            checker.check(f"projection {projection.name}", handler, [topic])
        touches = getattr(projection, "touches", None)
        if touches is not None:
            checker.check(
                f"projection {projection.name}", touches, projection.handlers, handled=False
            )
    return checker.report


# ------------------------------------------------------------------ decoded events


@dataclass(frozen=True)
class _Kind:
    """What an expression holds: ``rec`` recorded events (or containers of them), ``ev``
    events (or containers of them), ``fields`` the mapping of one event's fields, ``obj``
    an object of an annotated class (whose methods may return recorded events)."""

    kind: str
    classes: frozenset[type]
    cls: type | None = None  # kind "obj": an object of this class (e.g. the event log)


class EventObjectChecker:
    """Reads of decoded events' attributes in read-side features."""

    def __init__(self, catalogue: Mapping[str, type]) -> None:
        self.catalogue = catalogue
        self.all = frozenset(catalogue.values())
        self.report = Report()

    def check_module(self, module: ModuleType) -> None:
        source = inspect.getsource(module)
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                _EventWalk(self, module, node).run()

    def source_classes(self, func: Callable[..., Any]) -> frozenset[type]:
        """The events a reading function can return: those the topic constants it (or a
        module function it calls, two calls deep) names, or any event when none."""
        found: set[type] = set()
        seen: set[Any] = set()

        def collect(f: Callable[..., Any], depth: int) -> None:
            if f in seen or depth > 2 or (parsed := _parse_function(f)) is None:
                return
            seen.add(f)
            namespace = f.__globals__  # type: ignore[attr-defined]
            for node in ast.walk(parsed[0]):
                if isinstance(node, ast.Name) and isinstance(namespace.get(node.id), str):
                    found.update(classes_named(namespace[node.id], self.catalogue))
                elif (
                    isinstance(node, ast.Call)
                    and (callee := _resolve_callable(f, node.func)) is not None
                ):
                    collect(callee, depth + 1)

        collect(func, 0)
        return frozenset(found) or self.all

    def attribute(self, where: str, name: str, kind: _Kind) -> None:
        classes = kind.classes
        if name.startswith("__") or not classes:
            return  # no event reaches here (an isinstance that matches none)
        if any(name in fields_of(c) for c in classes):
            self.report.reads.append(f"{where}: {name}")
            return
        if any(hasattr(c, name) for c in classes):
            return  # a method or class attribute (mutate, apply…): not a stored value
        self.report.problems.append(
            f"{where}: reads {name!r} of an event, a field of none of "
            f"{', '.join(sorted(c.__qualname__ for c in classes))}"
        )


def classes_named(text: str, catalogue: Mapping[str, type]) -> set[type]:
    """The event classes a topic, a topic prefix or a LIKE pattern names."""
    if re.fullmatch(r"ledger(\.\w+)+:[\w.]*%?", text):
        prefix = text.rstrip("%")
        return {c for c in catalogue.values() if _topic(c).startswith(prefix)}
    return set()


class _EventWalk:
    def __init__(self, checker: EventObjectChecker, module: ModuleType, node: ast.AST) -> None:
        self.checker = checker
        self.module = module
        self.node = node
        self.env: dict[str, _Kind] = {}
        self.literals: dict[str, list[str]] = {}  # loop names over literal strings

    def where(self, node: ast.AST) -> str:
        return f"{self.module.__name__} line {getattr(node, 'lineno', 0)}"

    def run(self) -> None:
        node = self.node
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
            if arg.annotation is None:
                continue
            if "Recorded" in ast.unparse(arg.annotation):
                self.env[arg.arg] = _Kind("rec", self.checker.all)
            elif inspect.isclass(cls := self.evaluate(arg.annotation)):
                self.env[arg.arg] = _Kind("obj", frozenset(), cls)
        self.block(node.body, self.env)

    def block(self, statements: list[ast.stmt], env: dict[str, _Kind]) -> None:
        for statement in statements:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue  # walked on its own
            if isinstance(statement, ast.If):
                self.visit(statement.test, env)
                self.block(statement.body, self.narrowed(statement.test, env))
                self.block(statement.orelse, env)
                continue
            if isinstance(statement, ast.For | ast.AsyncFor):
                self.visit(statement.iter, env)
                self.bind(statement.target, self.kind_of(statement.iter, env), env)
                if isinstance(statement.target, ast.Name) and isinstance(
                    statement.iter, ast.Tuple | ast.List | ast.Set
                ):
                    values = [_const_str(e) for e in statement.iter.elts]
                    if values and None not in values:
                        self.literals[statement.target.id] = values  # type: ignore[assignment]
                self.block(statement.body, env)
                self.block(statement.orelse, env)
                continue
            if isinstance(statement, ast.Assign):
                self.visit(statement.value, env)
                for target in statement.targets:
                    self.assign(target, statement.value, env)
                continue
            if isinstance(statement, ast.AnnAssign) and statement.value is not None:
                self.visit(statement.value, env)
                self.assign(statement.target, statement.value, env)
                continue
            for _, value in ast.iter_fields(statement):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    self.block(value, env)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, ast.AST):
                            self.visit(item, env)
                elif isinstance(value, ast.AST):
                    self.visit(value, env)

    def assign(self, target: ast.expr, value: ast.expr, env: dict[str, _Kind]) -> None:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                self.assign(t, v, env)
            return
        self.bind(target, self.kind_of(value, env), env)

    @staticmethod
    def bind(target: ast.expr, kind: _Kind | None, env: dict[str, _Kind]) -> None:
        if isinstance(target, ast.Name):
            if kind is None:
                env.pop(target.id, None)
            else:
                env[target.id] = kind

    def narrowed(self, test: ast.expr, env: dict[str, _Kind]) -> dict[str, _Kind]:
        """``isinstance(x, Cls)`` (alone or in an ``and``): x holds only such events."""
        tests = (
            test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
        )
        env = dict(env)
        for t in tests:
            if not (
                isinstance(t, ast.Call)
                and isinstance(t.func, ast.Name)
                and t.func.id == "isinstance"
                and len(t.args) == 2
            ):
                continue
            kind = self.kind_of(t.args[0], env)
            cls = self.evaluate(t.args[1])
            if kind is None or kind.kind != "ev" or not inspect.isclass(cls):
                continue
            env[ast.unparse(t.args[0])] = _Kind(
                "ev", frozenset(c for c in kind.classes if issubclass(c, cls))
            )
        return env

    def evaluate(self, node: ast.expr) -> Any:
        """A dotted name (``Item.Borrowed``) through the module's globals."""
        if isinstance(node, ast.Name):
            return vars(self.module).get(node.id)
        if isinstance(node, ast.Attribute):
            return getattr(self.evaluate(node.value), node.attr, None)
        return None

    def kind_of(self, node: ast.expr | None, env: dict[str, _Kind]) -> _Kind | None:
        if node is None:
            return None
        key = ast.unparse(node)
        if key in env:
            return env[key]
        if isinstance(node, ast.Attribute) and node.attr == "event":
            inner = self.kind_of(node.value, env)
            if inner is not None and inner.kind == "rec":
                return _Kind("ev", inner.classes)
            return None
        if isinstance(node, ast.Subscript):
            return self._element(self.kind_of(node.value, env))
        if isinstance(node, ast.IfExp):
            return self.kind_of(node.body, env) or self.kind_of(node.orelse, env)
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            inner_env = self.comprehension(node.generators, env)
            return self.kind_of(node.elt, inner_env)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("values", "get"):
                return self._element(self.kind_of(func.value, env))
            if isinstance(func, ast.Attribute) and func.attr == "to_domain_event":
                return _Kind("ev", self.checker.all)
            if isinstance(func, ast.Name) and func.id == "vars" and node.args:
                inner = self.kind_of(node.args[0], env)
                if inner is not None and inner.kind == "ev":
                    return _Kind("fields", inner.classes)
                return None
            target = self.evaluate(func)
            if isinstance(func, ast.Attribute):
                receiver = self.kind_of(func.value, env)
                if receiver is not None and receiver.kind == "obj":
                    target = getattr(receiver.cls, func.attr, None)
            if inspect.isfunction(target):
                returns = str(target.__annotations__.get("return", ""))
                if "Recorded" in returns:
                    return _Kind("rec", self.checker.source_classes(target))
        return None

    @staticmethod
    def _element(kind: _Kind | None) -> _Kind | None:
        """An element of a container of (recorded) events is one too; a value out of an
        event's fields is just a value."""
        return kind if kind is not None and kind.kind in ("rec", "ev") else None

    def comprehension(
        self, generators: list[ast.comprehension], env: dict[str, _Kind]
    ) -> dict[str, _Kind]:
        env = dict(env)
        for generator in generators:
            self.bind(generator.target, self.kind_of(generator.iter, env), env)
            for condition in generator.ifs:
                env = self.narrowed(condition, env)
        return env

    def visit(self, node: ast.AST, env: dict[str, _Kind]) -> None:
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            for generator in node.generators:
                self.visit(generator.iter, env)
            inner = self.comprehension(node.generators, env)
            for generator in node.generators:
                for condition in generator.ifs:
                    self.visit(condition, inner)
            elements = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for element in elements:
                self.visit(element, inner)
            return
        if isinstance(node, ast.Lambda):
            return
        self.check(node, env)
        for child in ast.iter_child_nodes(node):
            self.visit(child, env)

    def check(self, node: ast.AST, env: dict[str, _Kind]) -> None:
        checker = self.checker
        if isinstance(node, ast.Attribute):
            kind = self.kind_of(node.value, env)
            if kind is not None and kind.kind == "ev":
                checker.attribute(self.where(node), node.attr, kind)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2:
                kind = self.kind_of(node.args[0], env)
                name = _const_str(node.args[1])
                if kind is not None and kind.kind == "ev" and name is not None:
                    checker.attribute(self.where(node), name, kind)
            elif isinstance(func, ast.Attribute) and func.attr == "get" and node.args:
                kind = self.kind_of(func.value, env)
                if kind is not None and kind.kind == "fields":
                    for name in self.names(node.args[0]):
                        checker.attribute(self.where(node), name, _Kind("ev", kind.classes))
        elif isinstance(node, ast.Subscript):
            kind = self.kind_of(node.value, env)
            if kind is not None and kind.kind == "fields":
                for name in self.names(node.slice):
                    checker.attribute(self.where(node), name, _Kind("ev", kind.classes))

    def names(self, node: ast.expr) -> list[str]:
        if (value := _const_str(node)) is not None:
            return [value]
        if isinstance(node, ast.Name):
            return self.literals.get(node.id, [])
        return []


# ------------------------------------------------------------------ topic literals


SHORT_TOPIC = re.compile(r"[A-Z][A-Za-z0-9]*\.[A-Z]\w*")
SHORT_PREFIX = re.compile(r"[A-Z][A-Za-z0-9]*\.")
FULL_TOPIC = re.compile(r"ledger(\.\w+)+:[A-Za-z_]\w*(\.\w+)*")
FULL_PREFIX = re.compile(r"ledger(\.\w+)+:([A-Z]\w*\.)*%?")


def check_topic_string(text: str, catalogue: Mapping[str, type], *, prefix_ok: bool) -> str | None:
    """What is wrong with a topic-shaped string, or None. Strings of other shapes pass."""
    if SHORT_TOPIC.fullmatch(text):
        return None if text in catalogue else "names no event class"
    if FULL_PREFIX.fullmatch(text):
        return None if classes_named(text, catalogue) else "is the prefix of no event topic"
    if FULL_TOPIC.fullmatch(text):
        module = text.partition(":")[0]
        if module.startswith("ledger.domain"):
            return (
                None
                if text.rpartition(":")[2] in catalogue and _is_event(text)
                else ("names no event class")
            )
        try:
            resolve_topic(text)  # e.g. a recorder's class named in the settings
        except Exception as error:
            return f"names nothing importable ({error.__class__.__name__}: {error})"
        return None
    if prefix_ok and SHORT_PREFIX.fullmatch(text):
        return (
            None
            if any(t.startswith(text) for t in catalogue)
            else ("is the prefix of no event topic")
        )
    return None


def _is_event(topic: str) -> bool:
    try:
        cls = resolve_topic(topic)
    except Exception:
        return False
    return inspect.isclass(cls) and issubclass(cls, DomainEvent)


def _topic_shaped(text: str, *, prefix_ok: bool) -> bool:
    return bool(
        SHORT_TOPIC.fullmatch(text)
        or FULL_TOPIC.fullmatch(text)
        or FULL_PREFIX.fullmatch(text)
        or (prefix_ok and SHORT_PREFIX.fullmatch(text))
    )


def scan_source(path: Path, module: str, catalogue: Mapping[str, type]) -> Report:
    """Topic-shaped literals in one file, and ``PREFIX + "Name"`` sums of a module
    constant and a literal. A short prefix (``"Item."``) counts only as the argument of
    ``startswith``: elsewhere a capitalised word and a full stop is just prose."""
    report = Report()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    constants = {
        t.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for t in node.targets
        if isinstance(t, ast.Name) and isinstance(node.value.value, str)
    }
    prefix_args = {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "startswith"
        and node.args
    }
    for node in ast.walk(tree):
        text: str | None = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and isinstance(node.left, ast.Name)
            and node.left.id in constants
            and (right := _const_str(node.right)) is not None
        ):
            text = constants[node.left.id] + right
        if text is None or not _topic_shaped(text, prefix_ok=id(node) in prefix_args):
            continue
        report.topics.add((f"{module} line {node.lineno}", text))
        problem = check_topic_string(text, catalogue, prefix_ok=id(node) in prefix_args)
        if problem:
            report.problems.append(f"{module} line {node.lineno}: {text!r} {problem}")
    return report


def scan_constants(module: ModuleType, catalogue: Mapping[str, type]) -> Report:
    """Module-level values built at import time (a list of topics made from a prefix and
    names, a dict keyed by topic): every topic-shaped string in them."""
    report = Report()
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        strings: list[str] = []
        if isinstance(value, str):
            strings = [value]
        elif isinstance(value, list | tuple | set | frozenset):
            strings = [v for v in value if isinstance(v, str)]
        elif isinstance(value, dict):
            strings = [k for k in value if isinstance(k, str)]
        for text in strings:
            if not _topic_shaped(text, prefix_ok=False):
                continue
            report.topics.add((f"{module.__name__}.{name}", text))
            problem = check_topic_string(text, catalogue, prefix_ok=False)
            if problem:
                report.problems.append(f"{module.__name__}.{name}: {text!r} {problem}")
    return report


# ------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def catalogue() -> dict[str, type]:
    return event_catalogue()


def test_the_catalogue_is_the_domain(catalogue: dict[str, type]) -> None:
    assert len(catalogue) >= MIN_EVENT_CLASSES, sorted(catalogue)
    for short, cls in catalogue.items():
        assert get_topic(cls).endswith(":" + short)
        assert resolve_topic(get_topic(cls)) is cls
        assert {"originator_id", "originator_version", "timestamp"} <= fields_of(cls)
    assert "originator_topic" in fields_of(catalogue["Item.Registered"])
    assert {"loan_id", "reader_id", "due_at", "owner", "holding"} <= fields_of(
        catalogue["Item.Borrowed"]
    )


def test_projection_topics_and_fields(catalogue: dict[str, type]) -> None:
    from ledger.projections import REGISTRY

    report = check_projections(REGISTRY.values(), catalogue)
    assert not report.problems, "\n".join(report.problems)
    assert len(report.topics) >= MIN_PROJECTION_TOPICS, sorted(report.topics)
    assert len(report.reads) >= MIN_HANDLER_FIELD_READS, report.reads


def test_read_side_features_read_fields_that_exist(catalogue: dict[str, type]) -> None:
    checker = EventObjectChecker(catalogue)
    for package in READ_SIDE:
        for module in _modules(package):
            checker.check_module(module)
    report = checker.report
    assert not report.problems, "\n".join(report.problems)
    assert len(report.reads) >= MIN_EVENT_OBJECT_READS, report.reads


def test_named_registries(catalogue: dict[str, type]) -> None:
    """Registries of event names kept beside the projections: each must still exist."""
    from ledger.disputes.evidence import PROOF
    from ledger.domain.disputes import LIBRARY_FIELDS
    from ledger.projections.history import _INTERNAL, ENVELOPE

    class_names = {cls.__name__ for cls in catalogue.values()}
    assert set(PROOF) - class_names == set(), "evidence.PROOF names no event class"
    every_event = frozenset.intersection(*(fields_of(c) for c in catalogue.values()))
    assert set(ENVELOPE) <= every_event, set(ENVELOPE) - every_event
    some_event = frozenset.union(*(fields_of(c) for c in catalogue.values()))
    assert set(_INTERNAL) <= some_event, set(_INTERNAL) - some_event
    item_events = [c for t, c in catalogue.items() if t.startswith("Item.")]
    some_item_event = frozenset.union(*(fields_of(c) for c in item_events))
    assert set(LIBRARY_FIELDS) <= some_item_event, set(LIBRARY_FIELDS) - some_item_event


def test_topic_literals_name_real_events(catalogue: dict[str, type]) -> None:
    report = Report()
    for package in LITERAL_SCAN:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if any(module == s or module.startswith(s + ".") for s in LITERAL_SCAN_SKIP):
                continue
            report.merge(scan_source(path, module, catalogue))
    for package in READ_SIDE:
        for module in _modules(package):
            report.merge(scan_constants(module, catalogue))
    assert not report.problems, "\n".join(report.problems)
    assert len(report.topics) >= MIN_TOPIC_LITERALS, sorted(report.topics)


# ------------------------------------------------------------------ the checkers, checked


class FakeRecord:
    __slots__ = ("data", "originator_id", "topic")


def _fake_reads_a_missing_field(r: FakeRecord, rows: Any) -> None:
    d = r.data
    rows.put("t", r.originator_id, (d["loan_id"], d["no_such_field"]))


def _fake_helper(record: FakeRecord, rows: Any) -> None:
    rows.put("t", record.originator_id, record.data.get("renamed_field"))


def _fake_reads_through_a_helper(r: FakeRecord, rows: Any) -> None:
    _fake_helper(r, rows)


def _fake_reads_changes(r: FakeRecord, rows: Any) -> None:
    changes = r.data["changes"]
    if "shelfmark" in changes:
        rows.put("t", r.originator_id, changes["location"])


def _fake_reads_a_missing_record_attribute(r: FakeRecord, rows: Any) -> None:
    rows.put("t", r.originator_id, r.position)


def _fake_fine(r: FakeRecord, rows: Any) -> None:
    d = r.data
    rows.put("t", r.originator_id, (d["loan_id"], d.get("reader_id"), "due_at" in d))


def _fake_reader(r: FakeRecord, rows: Any) -> None:
    rows.put("t", r.originator_id, r.data["home_library"])


def _fake_forgotten(r: FakeRecord, rows: Any) -> None:
    rows.delete("t", r.originator_id)


def _fake_touches(r: FakeRecord) -> Any:
    if r.topic == "Item.Borrowed":
        return [r.data["reader_id"]]  # a field of Item.Borrowed only: fine under the guard
    if r.topic.startswith("Reader."):
        return [r.data["home_library"]]  # handled here: no such field on Reader.Forgotten
    return [r.data.get("loan_id"), r.data.get("nowhere")]


def test_checker_finds_unknown_topics_and_missing_fields(catalogue: dict[str, type]) -> None:
    projection = SimpleNamespace(
        name="fake",
        handlers={
            "Item.Borrowed": _fake_reads_a_missing_field,
            "Item.Renewed": _fake_reads_through_a_helper,
            "Item.Corrected": _fake_reads_changes,
            "Item.Returned": _fake_reads_a_missing_record_attribute,
            "Item.Lent": _fake_fine,  # a renamed event class
            "Reader.Registered": _fake_reader,
            "Reader.Forgotten": _fake_forgotten,
        },
        touches=_fake_touches,
    )
    problems = check_projections([projection], catalogue).problems
    text = "\n".join(problems)

    def expect(*fragments: str) -> None:
        assert any(all(f in p for f in fragments) for p in problems), (fragments, text)

    expect("'Item.Lent'", "names no event class")
    expect("_fake_reads_a_missing_field", "'no_such_field'", "Item.Borrowed")
    expect("_fake_helper", "'renamed_field'", "Item.Renewed")  # followed into the helper
    expect("_fake_reads_changes", "changes['shelfmark']")
    expect("_fake_reads_a_missing_record_attribute", ".position")
    expect("_fake_touches", "'home_library'", "Reader.Forgotten")
    expect("_fake_touches", "'nowhere'")
    # and nothing else: the location change, the guarded reader_id, loan_id (a field of
    # some of the topics left after the guards) pass
    assert len(problems) == 7, text


def test_checker_passes_the_real_shape(catalogue: dict[str, type]) -> None:
    projection = SimpleNamespace(
        name="fake", handlers={"Item.Borrowed": _fake_fine}, touches=lambda r: ()
    )
    report = check_projections([projection], catalogue)
    assert report.problems == []
    assert sorted(report.reads) == [
        f"{__name__}._fake_fine line {_fake_fine.__code__.co_firstlineno + 2}: {name}"
        for name in ("due_at", "loan_id", "reader_id")
    ]


def test_event_object_checker(
    catalogue: dict[str, type], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fake_feature.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from typing import Any
            from ledger.domain.items import Item

            LOSSES = "ledger.domain.items:Item.DeclaredLost"

            @dataclass
            class Recorded:
                event: Any

            def read_losses(app) -> list[Recorded]:
                return app.query(LOSSES)

            def read_all(app) -> list[Recorded]:
                return app.query()

            class Log:
                def losses(self) -> list[Recorded]:
                    return read_losses(self)

            def settle(app, log: Log):
                losses = [r.event for r in log.losses() if r.event.holding]
                for event in losses:
                    print(event.reason, event.due_at)  # due_at: not on a loss
                for recorded in read_all(app):
                    event = recorded.event
                    if isinstance(event, Item.Borrowed):
                        print(event.loan_id, event.reason)  # reason: not on a borrow
                    print(event.returned_at, event.mutate, getattr(event, "nowhere", None))
                loans = [r.event.loan_id for r in read_all(app) if isinstance(r.event, Item.Found)]
                state = vars(recorded.event)
                for name in ("owner", "shelf"):
                    print(state.get(name))
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("fake_feature")
    checker = EventObjectChecker(catalogue)
    checker.check_module(module)
    problems = checker.report.problems
    text = "\n".join(problems)
    assert len(problems) == 5, text
    for line, name in ((25, "due_at"), (29, "reason"), (30, "nowhere"), (31, "loan_id")):
        assert any(f"line {line}: reads {name!r}" in p for p in problems), (line, name, text)
    assert any("line 34: reads 'shelf'" in p for p in problems), text
    reads = {r.split(": ")[1] for r in checker.report.reads}
    assert {"holding", "reason", "loan_id", "returned_at", "owner"} <= reads


def test_topic_strings_checked(catalogue: dict[str, type], tmp_path: Path) -> None:
    path = tmp_path / "fake.py"
    path.write_text(
        textwrap.dedent(
            """
            PREFIX = "ledger.domain.items:Item."
            GONE = "ledger.domain.items:Item.Lent"
            TOPICS = ["Item.Borrowed", "Item.Lent", "Reader.Forgotten"]
            LIKE = "ledger.domain.disputes:%"
            BAD_LIKE = "ledger.domain.appeals:%"

            def f(r):
                if r.topic.startswith("Patron."):
                    return PREFIX + "Vanished"
                return PREFIX + "Found", "Processes.", "ledger.nowhere:Thing"
            """
        ),
        encoding="utf-8",
    )
    report = scan_source(path, "fake", catalogue)
    text = "\n".join(report.problems)
    for fragment in (
        "line 3: 'ledger.domain.items:Item.Lent' names no event class",
        "line 4: 'Item.Lent' names no event class",
        "line 6: 'ledger.domain.appeals:%' is the prefix of no event topic",
        "line 9: 'Patron.' is the prefix of no event topic",
        "line 10: 'ledger.domain.items:Item.Vanished' names no event class",
        "line 11: 'ledger.nowhere:Thing' names nothing importable",
    ):
        assert any(fragment in p for p in report.problems), (fragment, text)
    assert len(report.problems) == 6, text  # "Processes." is prose, the rest is real
    constants = scan_constants(
        SimpleNamespace(  # type: ignore[arg-type]
            __name__="fake", ENDS=["ledger.domain.items:Item.Found", "Item.Gone"], N=3
        ),
        catalogue,
    )
    assert constants.problems == ["fake.ENDS: 'Item.Gone' names no event class"]
