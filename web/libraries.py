"""Member libraries: registered and governed by the consortium administrator."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from web import schemas as s
from web.auth import admin_only
from web.recording import ledger, record

bp = Blueprint(
    "libraries", __name__, url_prefix="/api/v1/libraries", description="Member libraries"
)


@bp.route("")
class Libraries(MethodView):
    @bp.arguments(s.LibraryIn)
    @bp.response(201, s.LibraryOut)
    @admin_only
    def post(self, body: dict[str, Any]):
        """Register a member library (administrator)."""
        return record(ledger().join_library, **body)


@bp.route("/<code>/policy")
class Policy(MethodView):
    @bp.arguments(s.PolicyIn)
    @bp.response(201, s.LibraryOut)
    @admin_only
    def post(self, body: dict[str, Any], code: str):
        """Change a library's loan policy (administrator)."""
        return record(ledger().change_policy, library=code, **body)
