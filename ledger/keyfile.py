"""Secret keys kept as hex in a file of their own, generated on first use (mode 0600).

Several processes start at once (API workers, the projection worker, the checkpoint
signer) and the first to find no file generates the key. The key is written whole to a
temporary file in the same directory, flushed to disk, and then hard-linked to its name:
``link`` fails if the name exists, so exactly one process's key wins a race, and a reader
sees either no file or the whole key, never a file still being written.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

#: Bytes of a generated key.
KEY_BYTES = 32
#: Fewer bytes than this in a key file is damage (a truncated copy, an empty file), never a key.
MIN_FILE_BYTES = 16


class KeyFileError(ValueError):
    """A key file that exists but does not hold a key."""


def hex_key(given_hex: str | None, path: Path, what: str) -> bytes:
    """A hex key given in the environment, else the one generated once into ``path``."""
    if given_hex:
        return bytes.fromhex(given_hex)
    if not path.exists():
        _create(path, what)
    return _read(path, what)


def _create(path: Path, what: str) -> None:
    """Write a new key to ``path`` unless another process does so first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the mode given to open() is narrowed by umask, never widened
            os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process generated it first: use that one
            return
        _fsync_directory(path.parent)
        log.warning("generated a new %s key at %s; back it up", what, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path: Path, what: str) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{what} key file {path} does not hold a hex key") from None
    if len(key) < MIN_FILE_BYTES:
        raise KeyFileError(
            f"{what} key file {path} is empty or short ({len(key)} bytes): a damaged key; "
            "restore it from the backup (removing it makes a new key, which the data "
            "recorded under the old one will not match)"
        )
    return key
