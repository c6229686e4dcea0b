"""An attachment is an https:// link (issue 10, finding 8): the evidence page links it, so
``javascript:``, ``data:`` and the like are refused by the dispute itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ledger import commands as c
from ledger.domain.errors import InvalidInput
from tests.helpers import CHENGDU, SHA, desk, refused, shipped
from tests.helpers import open_dispute as open_

if TYPE_CHECKING:
    from ledger.write import MemoryUnitOfWork, Writer


def _attach(app: Writer, dispute_id: object, uri: str) -> object:
    return app.execute(
        c.AddAttachment(
            dispute_id=dispute_id,  # type: ignore[arg-type]
            uri=uri,
            sha256=SHA,
            library=CHENGDU,
            actor=desk(CHENGDU),
        )
    )


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "http://files.example/receipt.pdf",
        "file:///etc/passwd",
        "s3://bucket/receipt.pdf",
        "//files.example/receipt.pdf",
        "https:alert(1)",
        "https://",
        "https:///path",
        "https://user:secret@files.example/receipt.pdf",
        "https://files.example/a b.pdf",
        "https://files.example/a\u0000.pdf",
        "https://files.example/a\ud800.pdf",
    ],
)
def test_only_https_links_are_attached(app: Writer, uow: MemoryUnitOfWork, uri: str) -> None:
    shipped(app)
    dispute_id = open_(app)
    refused(uow, InvalidInput, lambda: _attach(app, dispute_id, uri), field="uri")


@pytest.mark.parametrize(
    "uri",
    [
        "https://files.yuzhong.example/sf123.pdf",
        "HTTPS://files.example/a.pdf?v=2#page=3",
        "  https://文件.example/收据.pdf  ",
    ],
)
def test_an_https_link_is_attached(app: Writer, uri: str) -> None:
    shipped(app)
    dispute_id = open_(app)
    _attach(app, dispute_id, uri)
