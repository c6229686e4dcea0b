"""The API reference page's files, served locally (no CDN), and what each problem type means."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import Response, send_from_directory
from flask.views import MethodView
from swagger_ui_bundle import swagger_ui_path

from web.problems import all_codes, problem
from web.recording import Blueprint

#: /docs/static/*: Swagger UI's JavaScript and CSS from the swagger-ui-bundle wheel.
assets = FlaskBlueprint("docs_static", __name__)


@assets.get("/docs/static/<path:filename>")
def static(filename: str) -> Response:
    return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


bp = Blueprint(
    "problems",
    __name__,
    url_prefix="/problems",
    description="What each error `type` means (public, no key needed)",
)


class ProblemType(ma.Schema):
    type = ma.fields.String(metadata={"example": "/problems/item-not-available"})
    status = ma.fields.Integer(metadata={"description": "the HTTP status it comes with"})
    description = ma.fields.String()


@bp.route("")
class ProblemTypes(MethodView):
    @bp.response(200, ProblemType(many=True))
    @bp.doc(security=[])
    def get(self) -> list[dict[str, Any]]:
        """Every stable problem type the API can answer."""
        return [{"type": f"/problems/{code}", **info} for code, info in all_codes().items()]


@bp.route("/<code>")
class ProblemTypeResource(MethodView):
    @bp.response(200, ProblemType)
    @bp.alt_response(404, response="NOT_FOUND")
    @bp.doc(security=[])
    def get(self, code: str) -> Any:
        """What one problem type means: the target of every error's ``type`` URI."""
        info = all_codes().get(code)
        if info is None:
            return problem(
                404, "not-found", "Not Found", "no such problem type; GET /problems lists them"
            )
        return {"type": f"/problems/{code}", **info}
