"""``tongjie serve`` as a real process: gunicorn workers and the projection worker on the test
database, spoken to over HTTP, keys made and revoked with ``tongjie keys``, stopped cleanly."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import requests

from ledger import commands as c
from tests.conftest import IDENTITY_KEY, open_ledger
from tests.helpers import CHENGDU, YUZHONG, desk, identity_number, join_all, register_item

#: A cold start migrates, forks the workers and opens their pools; on a busy 2-core
#: machine that can take a while.
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(dsn: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LEDGER_DATABASE_URL": dsn,
        "LEDGER_DATA_DIR": str(data_dir),
        "LEDGER_IDENTITY_KEY": IDENTITY_KEY.hex(),
        "LEDGER_POOL_SIZE": "4",
    }


def tongjie(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledger", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def new_key(env: dict[str, str], *args: str) -> tuple[str, str]:
    """``tongjie keys create``: the key id and the token it shows once."""
    out = tongjie(env, "keys", "create", *args)
    token = next(line for line in out.splitlines() if line.startswith("tj_"))
    return token.split("_")[1], token


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def env(dsn: str, tmp_path: Path) -> dict[str, str]:
    return environment(dsn, tmp_path / "data")


def start(env: dict[str, str], log: Path, *extra: str) -> Server:
    port = free_port()
    out = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "serve", "--port", str(port), "--workers", "2", *extra],
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a failed test can stop all of it
    )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, server.output()
            try:
                if requests.get(f"{server.base}/healthz", timeout=5).status_code == 200:
                    return server
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.3)
        raise AssertionError(
            f"tongjie serve did not answer in {START_TIMEOUT}s:\n{server.output()}"
        )
    except BaseException:
        stop(server)
        raise


def children(pid: int) -> set[int]:
    """Every descendant of a process (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            found |= {kid} | children(kid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(server: Server) -> int:
    """SIGTERM, as a service manager would; the group is killed only if that fails."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        raise


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    server = start(env, tmp_path / "serve.log")
    try:
        yield server
    finally:
        if server.process.poll() is None:
            stop(server)


def test_serve_answers_over_http_and_stops_cleanly(server: Server, env: dict[str, str]) -> None:
    base = f"{server.base}/api/v1"
    _, admin = new_key(env, "--admin")
    as_admin = {"Authorization": f"Bearer {admin}"}
    for code, name, region, level in (
        (CHENGDU, "成都市图书馆", "sichuan", "prefecture"),
        (YUZHONG, "渝中区图书馆", "chongqing", "county"),
    ):
        response = requests.post(
            f"{base}/libraries",
            json={"code": code, "name": name, "region": region, "level": level},
            headers=as_admin,
            timeout=10,
        )
        assert response.status_code == 201, response.text

    key_id, token = new_key(env, "--library", CHENGDU)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    number = identity_number(31)

    assert (
        session.post(f"{base}/items", json={"owner": CHENGDU, "barcode": "S1"}).status_code == 201
    )
    reader = session.post(
        f"{base}/readers",
        json={"document": "resident_id", "number": number, "home_library": CHENGDU},
    )
    assert reader.status_code == 201 and number not in reader.text
    loan = session.post(
        f"{base}/loans",
        json={
            "owner": CHENGDU,
            "barcode": "S1",
            "library": CHENGDU,
            "reader": {"document": "social_security_card", "number": number},
        },
        headers={"Idempotency-Key": "serve-1"},
    )
    assert loan.status_code == 201, loan.text
    retry = session.post(
        f"{base}/loans",
        json={
            "owner": CHENGDU,
            "barcode": "S1",
            "library": CHENGDU,
            "reader": {"document": "social_security_card", "number": number},
        },
        headers={"Idempotency-Key": "serve-1"},
    )
    assert (retry.status_code, retry.headers["Idempotent-Replayed"]) == (201, "true")
    assert retry.content == loan.content

    too_big = b'{"owner": "SC-510100", "barcode": "S2", "title": "' + b"x" * 70_000 + b'"}'
    for body in (too_big, iter([too_big[:100], too_big[100:]])):  # sized, then chunked
        refused = session.post(
            f"{base}/items", data=body, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 413, refused.text
        assert refused.json()["type"] == "/problems/body-too-large"

    state = session.get(f"{base}/items/{CHENGDU}/S1").json()
    assert (state["status"], state["loan"]["loan_id"]) == ("on_loan", loan.json()["loan_id"])

    refused = session.post(
        f"{base}/returns", json={"owner": CHENGDU, "barcode": "S1", "library": YUZHONG}
    )
    assert refused.status_code == 403
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/wrong-library"
    returned = session.post(
        f"{base}/returns", json={"owner": CHENGDU, "barcode": "S1", "library": CHENGDU}
    )
    assert (returned.status_code, returned.json()["disposition"]) == (201, "shelve")

    assert requests.get(f"{server.base}/docs", timeout=10).status_code == 200
    assert (
        requests.get(f"{server.base}/openapi.json", timeout=10).json()["openapi"].startswith("3.")
    )
    health = requests.get(f"{server.base}/healthz", timeout=10).json()
    assert health["position"] >= 6
    _wait_for_projections(server)

    tongjie(env, "keys", "revoke", key_id)
    assert session.get(f"{base}/items/{CHENGDU}/S1").status_code == 401

    family = children(server.process.pid)
    assert len(family) >= 3  # two gunicorn workers and the projection worker
    background = {_command_line(pid) for pid in family}
    for job in ("-m ledger project", "-m ledger checkpoint --every", "-m ledger disputes sweep"):
        assert any(job in line for line in background), (job, background)
    assert stop(server) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in family), "a worker outlived tongjie serve"

    log = server.output()
    assert re.search(r'"POST /api/v1/loans HTTP/1\.1" 201', log), log
    assert number not in log and number[6:14] not in log  # no identity number, no birth date
    assert token not in log and admin not in log


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_for_projections(server: Server) -> None:
    """The projection worker that serve starts catches up with the log (when there is one)."""
    deadline = time.monotonic() + 30
    while True:
        health = requests.get(f"{server.base}/healthz", timeout=10).json()
        lag = health.get("projections")
        if lag is None or all(p["behind"] == 0 for p in lag.values()):
            return
        assert time.monotonic() < deadline, health
        time.sleep(0.2)


def test_the_printed_example_works_when_pasted(
    dsn: str, env: dict[str, str], tmp_path: Path
) -> None:
    """What ``make run`` prints: the curl lines, replayed as written (no curl needed)."""
    ledger = open_ledger(dsn)
    try:
        join_all(ledger)
        register_item(ledger, YUZHONG, "Y1")
        result = ledger.execute(
            c.RegisterReader(
                document="resident_id",
                number=identity_number(32),
                library=YUZHONG,
                actor=desk(YUZHONG),
            )
        )
        reader = UUID(result.outcome["reader_id"])
        ledger.execute(
            c.Borrow(
                owner=YUZHONG, barcode="Y1", library=YUZHONG, reader_id=reader, actor=desk(YUZHONG)
            )
        )
    finally:
        ledger.close()

    server = start(env, tmp_path / "example.log", "--example-key")
    try:
        printed = server.output()
        token = re.search(r"export TJ_KEY=(\S+)", printed)
        assert token, printed
        commands = [
            line.strip() for line in printed.splitlines() if line.strip().startswith("curl ")
        ]
        assert len(commands) == 2, printed
        answers = [_replay(command, token.group(1)) for command in commands]
        assert answers[0].status_code == 200
        assert (answers[0].json()["owner"], answers[0].json()["status"]) == (YUZHONG, "on_loan")
        assert answers[1].status_code == 201, answers[1].text
        assert answers[1].json()["disposition"] == "transfer_to_owner"  # 渝中 wants it back
        assert "waits at SC-510100 to be sent home" in printed
        again = _replay(commands[1], token.group(1))
        assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
    finally:
        assert stop(server) == 0


def _replay(command: str, token: str) -> requests.Response:
    """Do what a pasted ``curl -s [-X POST] URL -H ... [-d BODY]`` line does."""
    words = shlex.split(command.replace("$TJ_KEY", token))
    method, url, headers, data = "GET", "", {}, None
    words = iter(words[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(words).encode()
        elif word.startswith("http"):
            url = word
    answer: Any = requests.request(method, url, headers=headers, data=data, timeout=10)
    return answer


def test_nothing_outlives_a_serve_killed_with_sigkill(server: Server) -> None:
    """SIGKILL gives serve no chance to stop its jobs: the kernel does (PR_SET_PDEATHSIG),
    and gunicorn's workers notice their master is gone."""
    family = children(server.process.pid)
    jobs = [pid for pid in family if " -m ledger " in _command_line(pid)]
    assert len(jobs) >= 3, [_command_line(pid) for pid in family]  # project, checkpoint, sweep
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [_command_line(pid) for pid in family if alive(pid)], "outlived serve"
