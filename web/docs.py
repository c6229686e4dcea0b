"""The API reference page's static files, served locally (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from web.problems import all_codes

bp = Blueprint("docs_static", __name__)


@bp.get("/docs/static/<path:filename>")
def static(filename: str) -> Response:
    return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


@bp.get("/problems/<code>")
def problem_type(code: str) -> tuple[dict[str, str], int]:
    """What a problem ``type`` means: the target of every error's type URI."""
    codes = all_codes()
    if code not in codes:
        return {"type": code, "description": "unknown problem type", "known": ", ".join(codes)}, 404
    return {"type": f"/problems/{code}", "description": codes[code]}, 200
