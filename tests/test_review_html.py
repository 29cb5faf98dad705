"""The HTML review report, rendered by a real headless browser (Debian's ``chromium``): the DOM it
builds shows every principal and both charts, and the screenshot has the chart's colours."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from iamtrim.ingest import ingest
from iamtrim.render import review_html
from iamtrim.review.history import record_run
from iamtrim.review.job import review
from iamtrim.store import Store

ROOT = Path(__file__).resolve().parent.parent
AUTHZ = ROOT / "samples" / "authz" / "account-authorization-details.json"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Offline and quiet: no sandbox (CI runs as root), no first-run, sync or component updates.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
]


class _Dom(HTMLParser):
    """Elements by tag with their attributes, and the text inside each <g class=principal>."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.principal_labels: list[str] = []
        self._in_principal = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "g" and a.get("class") == "principal":
            self._in_principal = 1
        elif self._in_principal == 1 and tag == "text":
            self._in_principal = 2  # the first <text> of the group is its label

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._in_principal = 0

    def handle_data(self, data: str) -> None:
        if self._in_principal == 2:
            self.principal_labels.append(data)
            self._in_principal = 3


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of an 8-bit RGB/RGBA, non-interlaced PNG (what chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, channels, rows


def _count(rows: list[bytes], channels: int, rgb: tuple[int, int, int]) -> int:
    want = bytes(rgb)
    return sum(1 for row in rows for i in range(0, len(row), channels) if row[i : i + 3] == want)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_renders_principals_and_charts(tmp_path: Path) -> None:
    assert CHROMIUM is not None
    with Store(tmp_path / "s.sqlite") as st:
        ingest([ROOT / "samples" / "AWSLogs"], st, workers=1)
        rep = record_run(st, review(st, AUTHZ))
    page = tmp_path / "review.html"
    page.write_text(review_html.to_html(rep))
    assert "http://" not in page.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
    url = page.as_uri()
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    parsed = _Dom()
    parsed.feed(dom)
    ids = {a.get("id") for _, a in parsed.elements}
    assert {"granted-vs-used", "trend", "principals"} <= ids
    diffed = [p for p in rep.review.principals if not p.note]
    shown = [a["data-principal"] for t, a in parsed.elements if t == "g" and a.get("class") == "principal"]
    assert shown == [p.principal for p in diffed]
    assert parsed.principal_labels == [p.principal.split(":", 5)[-1] for p in diffed]
    bars = [a for t, a in parsed.elements if t == "rect" and a.get("class") == "run-bar"]
    assert len(bars) == 4 * len(rep.trend)  # one segment per severity per run
    for p in rep.review.principals:  # every principal in the table, diffed or not
        assert p.principal in dom

    shot = tmp_path / "review.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, "--window-size=1200,1400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    _, channels, rows = _pixels(shot.read_bytes())
    # The chart is painted: bars in the granted grey and the used green, a high-severity segment.
    assert _count(rows, channels, (0xBD, 0xC3, 0xC7)) > 500
    assert _count(rows, channels, (0x27, 0xAE, 0x60)) > 200
    assert _count(rows, channels, (0xC0, 0x39, 0x2B)) > 200


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_report_of_accounts_has_a_section_per_account(tmp_path: Path) -> None:
    """An --accounts review (accounts read through an injected fetch: the sample account from its
    file, one account failing as AWS would) renders a section per account in a real browser."""
    from iamtrim.errors import AwsError
    from iamtrim.review.current import AuthzDetails, authz_from_file
    from iamtrim.review.organization import AccountSpec, review_accounts

    assert CHROMIUM is not None
    sample, failing = "444455556666", "111122223333"
    denied = "access denied: iamtrim needs sts:AssumeRole on the role (see docs/permissions.md)"

    def fetch(spec: AccountSpec) -> AuthzDetails:
        if spec.account == failing:
            raise AwsError(denied)
        return authz_from_file(AUTHZ)

    accounts = [
        AccountSpec(failing, f"arn:aws:iam::{failing}:role/iamtrim-review", "sandbox"),
        AccountSpec(sample, f"arn:aws:iam::{sample}:role/iamtrim-review", "ml-prod"),
    ]
    with Store(tmp_path / "s.sqlite") as st:
        ingest([ROOT / "samples" / "AWSLogs"], st, workers=1)
        rep = record_run(st, review_accounts(st, accounts, fetch))
    page = tmp_path / "review.html"
    page.write_text(review_html.to_html(rep))
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parsed = _Dom()
    parsed.feed(dom)
    ids = {a.get("id") for _, a in parsed.elements}
    assert {f"account-{sample}", f"account-{failing}", f"principals-{sample}"} <= ids
    assert f"principals-{failing}" not in ids and "principals" not in ids
    assert "Account 111122223333 (sandbox)" in dom and "Not reviewed:" in dom and "sts:AssumeRole" in dom
    for p in rep.review.principals:
        assert p.principal.split(":")[4] == sample and p.principal in dom
    # the chart's labels name the account: the same role name may be in several
    assert parsed.principal_labels == [
        f"{sample} {p.principal.split(':', 5)[-1]}" for p in rep.review.principals
    ]
    shot = tmp_path / "accounts.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    _, channels, rows = _pixels(shot.read_bytes())
    assert _count(rows, channels, (0xBD, 0xC3, 0xC7)) > 500  # the granted-vs-used chart is painted
