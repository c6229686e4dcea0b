"""schemathesis against /openapi.json: generated requests (valid and invalid) to every
operation, with a valid key, must get no 5xx and only responses the spec documents.

Bounded: ``MAX_EXAMPLES`` per operation and phase, so the normal suite (``make test``)
runs it. The database holds the consortium and the spec's example item and reader, so
the requests built from the spec's examples reach the ledger's rules, not just 404s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import CHENGDU
from tests.web_support import ADMIN_KEY, Api, projection_worker, web_api
from web import create_app

#: Examples per operation and generation phase: enough to meet every field's edge cases
#: in CI without making the suite slow (about twenty operations).
MAX_EXAMPLES = 30

#: The spec's examples (see web.schemas): an item of 成都 and a registered reader.
EXAMPLE_BARCODE = "510100000001"
EXAMPLE_NUMBER = "11010519491231002X"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


#: Read models answer after=POSITION once the worker (running here) has folded it: ample time
#: for that on a busy machine, short enough that a position that never comes fails fast.
READ_WAIT = 2.0


@pytest.fixture
def api(dsn: str) -> Iterator[Api]:
    with web_api(dsn, config={"LEDGER_READ_WAIT": READ_WAIT}) as api, projection_worker(dsn):
        api.item(CHENGDU, EXAMPLE_BARCODE)
        response = api.post(
            "/readers",
            {"document": "resident_id", "number": EXAMPLE_NUMBER, "home_library": CHENGDU},
        )
        assert response.status_code == 201
        yield api


#: The spec as served at /openapi.json. Generating it needs no database, so it is read at
#: collection time from an app without a ledger; each test then talks to an app of its own.
schema = schemathesis.openapi.from_wsgi("/openapi.json", create_app(None))  # type: ignore[arg-type]
schema.config.generation.update(max_examples=MAX_EXAMPLES)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_keeps_its_published_contract(case: schemathesis.Case, api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.tokens[ADMIN_KEY]}"}
    case.call_and_validate(app=api.app, headers=headers, checks=CHECKS)
