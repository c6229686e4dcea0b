"""The report's faces: CLI table/CSV/HTML, and HTTP (scoped to the key's library)."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner

from ledger import commands as c
from ledger.cli import main
from ledger.keys import create_key
from ledger.projections.circulation_report import PROJECTION
from ledger.projections.runner import LiveRunner
from tests.conftest import IDENTITY_KEY, open_ledger
from tests.helpers import CHENGDU, JINJIANG, YUZHONG, desk, join_all, register_item
from tests.helpers import register_reader as reader
from web import create_app


def history(dsn: str) -> None:
    app = open_ledger(dsn)
    join_all(app)
    register_item(app, CHENGDU, "R1")
    rid = reader(app, 5, home=YUZHONG)
    app.execute(
        c.Borrow(owner=CHENGDU, barcode="R1", library=CHENGDU, reader_id=rid, actor=desk(CHENGDU))
    )
    app.execute(c.Return(owner=CHENGDU, barcode="R1", library=YUZHONG, actor=desk(YUZHONG)))
    app.close()
    with LiveRunner(dsn, [PROJECTION]) as runner:
        runner.catch_up()


def test_cli_formats(dsn: str, tmp_path) -> None:
    history(dsn)
    env = {"LEDGER_DATABASE_URL": dsn, "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex()}
    run = CliRunner().invoke
    base = ["report", "circulation", "--from", "2000-01-01", "--to", "2100-01-01"]
    table = run(main, base, env=env)
    assert table.exit_code == 0, table.output
    assert CHENGDU in table.output and "consortium total" in table.output
    csv = run(main, [*base, "--format", "csv", "--by", "flow"], env=env)
    assert csv.output.splitlines() == ["borrowed_at,returned_at,returns", f"{CHENGDU},{YUZHONG},1"]
    page = tmp_path / "report.html"
    html = run(main, [*base, "--format", "html", "-o", str(page)], env=env)
    assert html.exit_code == 0, html.output
    text = page.read_text()
    assert text.count("<svg") >= 3 and "<script" not in text and "cdn" not in text.lower()
    bad = run(main, [*base[:2], "--from", "2026-02-01", "--to", "2026-01-01"], env=env)
    assert bad.exit_code != 0 and "starts" in bad.output
    unknown = run(main, [*base, "--by", "weekday"], env=env)
    assert unknown.exit_code != 0 and "unknown grouping" in unknown.output
    quiet = run(main, [*base, "--library", JINJIANG], env=env)
    assert quiet.exit_code == 0 and "no rows" in quiet.output


def test_http_scope_and_errors(dsn: str) -> None:
    history(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        desk_key = create_key(conn, library=YUZHONG)[1]
        admin_key = create_key(conn, library=None)[1]
    app = open_ledger(dsn)
    client = create_app(app).test_client()
    try:
        url = "/api/v1/reports/circulation?from=2000-01-01&to=2100-01-01"
        mine = client.get(url, headers={"Authorization": f"Bearer {desk_key}"}).get_json()
        assert mine["scope"] == YUZHONG
        assert [r["library"] for r in mine["rows"]] == [YUZHONG]
        assert mine["rows"][0]["cross_library_returns"] == 1
        assert mine["totals"]["loans"] == 1  # consortium totals, not just its own
        every = client.get(url, headers={"Authorization": f"Bearer {admin_key}"}).get_json()
        assert {r["library"] for r in every["rows"]} == {CHENGDU, YUZHONG}
        bad = client.get(url + "&by=weekday", headers={"Authorization": f"Bearer {admin_key}"})
        assert bad.status_code == 422 and bad.get_json()["field"] == "by"
        page = client.get(
            url.replace("circulation?", "circulation.html?"),
            headers={"Authorization": f"Bearer {admin_key}"},
        )
        assert page.status_code == 200 and "<svg" in page.get_data(as_text=True)
    finally:
        app.close()
