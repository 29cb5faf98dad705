"""Real parts for the AWS tests: moto's server on 127.0.0.1, fake credentials, and the list of API
calls ``docs/permissions.md`` allows (every call iamtrim makes in the test session is checked
against it through ``iamtrim.aws.observe_calls``)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PERMISSIONS = ROOT / "docs" / "permissions.md"

# Fake credentials and no shared config: nothing on the machine running the tests is read, and
# no instance-metadata lookup is tried.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    # moto's copies of the AWS managed policies (1,600 documents per account) are not loaded:
    # tests create the sample's managed policies themselves, with the sample's documents.
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "false",
}
NO_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def documented_calls(path: Path = PERMISSIONS) -> dict[tuple[str, str], str]:
    """(service, operation) → IAM action, from the table under '## Every call iamtrim makes'."""
    text = path.read_text()
    section = text.split("## Every call iamtrim makes", 1)[1].split("\n## ", 1)[0]
    out: dict[tuple[str, str], str] = {}
    for m in re.finditer(
        r"^\| `([a-z0-9-]+):([A-Za-z0-9]+)` \| `([a-z0-9-]+:[A-Za-z0-9]+)` \|", section, re.M
    ):
        out[(m.group(1), m.group(2))] = m.group(3)
    return out


class UnlistedCall(AssertionError):
    pass


RECORDED: set[tuple[str, str]] = set()


@pytest.fixture(scope="session", autouse=True)
def aws_calls_are_listed() -> Iterator[None]:
    """Every API call any test makes through iamtrim's sessions must be in docs/permissions.md."""
    from iamtrim import aws

    allowed = documented_calls()

    def check(service: str, operation: str) -> None:
        RECORDED.add((service, operation))
        if (service, operation) not in allowed:
            raise UnlistedCall(f"{service}:{operation} is not listed in docs/permissions.md")

    stop = aws.observe_calls(check)
    yield
    stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server (S3, IAM, STS, KMS and the rest) in a thread on a free local port."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh moto account state and fake credentials in the environment for one test."""
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    return moto_server


def cli_here(*args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (so the call recorder sees its sessions): exit code, out, err."""
    from iamtrim.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["iamtrim", *args]
    code: Any = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return int(code or 0), out.getvalue(), err.getvalue()
