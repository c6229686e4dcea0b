"""Secret keys kept as hex in a file of their own, generated on first use (mode 0600)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def hex_key(given_hex: str | None, path: Path, what: str) -> bytes:
    """A hex key given in the environment, else the one generated once into ``path``."""
    if given_hex:
        return bytes.fromhex(given_hex)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process generated it first: use that one
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            log.warning("generated a new %s key at %s; back it up", what, path)
    return bytes.fromhex(path.read_text().strip())
