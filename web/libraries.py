"""Member libraries: registered and governed by the consortium administrator."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from ledger import commands as c
from web import schemas as s
from web.auth import admin_only
from web.recording import Blueprint, record

bp = Blueprint(
    "libraries", __name__, url_prefix="/api/v1/libraries", description="Member libraries"
)


@bp.route("")
class Libraries(MethodView):
    @admin_only  # before the body is read: a desk key gets 403 whatever it sends
    @bp.command(s.LibraryIn, s.LibraryOut)
    def post(self, body: dict[str, Any]):
        """Register a member library (administrator)."""
        return record(c.JoinLibrary, **body)


@bp.route("/<code:code>/policy")
class Policy(MethodView):
    @admin_only
    @bp.command(s.PolicyIn, s.LibraryOut)
    def post(self, body: dict[str, Any], code: str):
        """Set a library's loan policy, replacing the whole policy (administrator)."""
        return record(c.ChangePolicy, library=code, **body)
