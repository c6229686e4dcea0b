"""Key files (identity.key, signing.key, witness keys) under concurrent first starts.

Several processes started at once (``make run``: the API workers, the projection worker,
the checkpoint signer) each load the key; the first generates it. None may read a file
another is still writing, and all must end up with the one key that won.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.keyfile import KeyFileError, hex_key

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 6
TRIALS = 20

#: Each child imports first, then waits for a common instant, so that the key loading of
#: all of them starts together rather than staggered by interpreter start-up.
CHILD = """
import sys, time
from pathlib import Path
from ledger.keyfile import hex_key
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    print(hex_key(None, Path(sys.argv[1]) / "identity.key", "identity").hex())
except Exception as error:
    print(f"ERROR {type(error).__name__}: {error}")
"""


def _concurrent_start(directory: Path) -> list[str]:
    start = time.time() + 1.0
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), repr(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    return [child.communicate(timeout=60)[0].strip() for child in children]


def test_processes_starting_at_once_all_get_the_one_whole_key(tmp_path: Path) -> None:
    failures = []
    for trial in range(TRIALS):
        directory = tmp_path / f"trial-{trial}"
        keys = _concurrent_start(directory)
        path = directory / "identity.key"
        written = path.read_text().strip()
        if len(set(keys)) != 1 or keys[0] != written or len(bytes.fromhex(written)) != 32:
            failures.append((trial, keys, written))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in directory.iterdir()] == ["identity.key"], "a temp file was left"
    assert not failures, f"{len(failures)} of {TRIALS} trials disagreed: {failures[:3]}"


def test_a_key_file_is_created_0600_and_read_back(tmp_path: Path) -> None:
    old = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        key = hex_key(None, tmp_path / "deep" / "signing.key", "signing")
    finally:
        os.umask(old)
    path = tmp_path / "deep" / "signing.key"
    assert len(key) == 32 and path.read_text().strip() == key.hex()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hex_key(None, path, "signing") == key
    assert hex_key("00" * 16, path, "signing") == bytes(16)  # the environment wins


@pytest.mark.parametrize("content", ["", "\n", "ab12", "zz" * 32])
def test_an_empty_short_or_garbled_key_file_is_an_error_naming_it(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "identity.key"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=r"identity\.key"):
        hex_key(None, path, "identity")
    assert path.read_text() == content  # never overwritten: it may be a damaged real key
