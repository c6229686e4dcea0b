"""Bearer API keys: every request names its key; a library's key acts only at its desk."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from werkzeug.exceptions import Forbidden, Unauthorized

from ledger.domain.common import Actor
from ledger.keys import authenticate
from web.reading import eventlog

#: Paths anyone may read: the spec, the docs, health, problem descriptions.
PUBLIC_PREFIXES = ("/openapi.json", "/docs", "/healthz", "/problems")
#: Paths anyone may GET: checkpoints and proofs hold only sizes and hashes, and a witness or
#: an auditor must be able to check the ledger without a key of its own (web/integrity.py).
PUBLIC_READS = ("/api/v1/checkpoints", "/api/v1/proofs")

F = TypeVar("F", bound=Callable[..., Any])


def load_actor() -> None:
    """Run before every request: resolve the bearer key or refuse."""
    if request.path.startswith(PUBLIC_PREFIXES) or request.method == "OPTIONS":
        return
    if request.method in ("GET", "HEAD") and request.path.startswith(PUBLIC_READS):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <key> (create one with tongjie keys create)")
    with eventlog().connection() as conn:
        key = authenticate(conn, token.strip())
    if key is None:
        raise Unauthorized("this API key is unknown or revoked")
    g.actor = key.actor


def actor() -> Actor:
    return g.actor


def admin_only(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not actor().is_admin:
            raise Forbidden("only the consortium administrator may do this")
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def scope(requested: str | None) -> str | None:
    """The library a read is about: a library's key sees only its own, whatever it asks
    for; the administrator sees what it asks for (None: every library)."""
    own = actor().library
    return own if own is not None else requested
