"""Compare two usage stores row for row: the contract of every engine (docs/scale.md).

Exact: usage keys with count, first and last seen and a fold's key sketch (byte for byte);
coverage; skips; principals; files (digest, path, size, format, records, malformed, error); the
counted events' hashes by day (``event_days``); instance-profile changes (time, account, profile,
kind, role, event id). Samples of event ids and source IPs are exact as sets only where the engine
saw them: each sampled value must be one the local store could have sampled (checked by the
callers against the records), and samples are never empty when the local ones are not.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iamtrim.store import Store
from tests.factories import ACCOUNT, make_record_dict, management_record_dict, user_identity

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def bench_trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic benchmark trail (bench/make_trail.py: every shape, many S3 keys)."""
    out = tmp_path_factory.mktemp("bench-trail")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "make_trail.py"),
            "--out",
            str(out),
            "--records",
            "6000",
            "--files",
            "6",
            "--procs",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return out / "AWSLogs"


PROFILE_DAY = "2026/10/02"
WEB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/web-role"
BATCH_ROLE = f"arn:aws:iam::{ACCOUNT}:role/batch-role"


def _iam(name: str, request: dict[str, Any], when: str, event_id: str, **fields: Any) -> dict[str, Any]:
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_AddRoleToInstanceProfile.html and
    # its siblings; IAM's records are logged in us-east-1 with no resources[].
    identity = user_identity("IAMUser", arn=f"arn:aws:iam::{ACCOUNT}:user/admin", userName="admin")
    return management_record_dict(
        "iam.amazonaws.com",
        name,
        request,
        eventTime=when,
        eventID=event_id,
        userIdentity=identity,
        **fields,
    )


def _run_instances(when: str, event_id: str, profile: dict[str, str]) -> dict[str, Any]:
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RunInstances.html (IamInstanceProfile)
    return make_record_dict(
        eventSource="ec2.amazonaws.com",
        eventName="RunInstances",
        requestParameters={
            "instancesSet": {"items": [{"imageId": "ami-0abcdef1234567890", "minCount": 1, "maxCount": 1}]},
            "iamInstanceProfile": profile,
        },
        responseElements={"instancesSet": {"items": [{"instanceId": "i-0123456789abcdef0"}]}},
        eventTime=when,
        eventID=event_id,
        eventCategory="Management",
        resources=None,
        additionalEventData=None,
    )


def profile_trail(folder: Path) -> Path:
    """A day's trail (two delivery files) in which an instance profile changes role twice and is
    passed between the changes: the same AddRoleToInstanceProfile call twice in the day (identical
    but for time and id), a failed one, one copy of a record in both files, one eventTime with
    milliseconds (kept as written). Returns the ``AWSLogs`` folder."""
    web = {"instanceProfileName": "web-profile", "roleName": "web-role"}
    batch = {"instanceProfileName": "web-profile", "roleName": "batch-role"}
    created = _iam(
        "CreateInstanceProfile", {"instanceProfileName": "web-profile"}, "2026-10-02T08:00:00Z", "e-01"
    )
    first = [
        created,
        _iam("AddRoleToInstanceProfile", web, "2026-10-02T08:01:00Z", "e-02"),
        _run_instances("2026-10-02T09:00:00Z", "e-03", {"name": "web-profile"}),
        _iam("RemoveRoleFromInstanceProfile", web, "2026-10-02T10:00:00Z", "e-04"),
        _iam("AddRoleToInstanceProfile", batch, "2026-10-02T10:00:00Z", "e-05"),
        _iam(
            "AddRoleToInstanceProfile",
            web,
            "2026-10-02T10:30:00Z",
            "e-06",
            errorCode="LimitExceeded",
            errorMessage="Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1",
        ),
    ]
    second = [
        created,  # delivered twice: one change
        _run_instances(
            "2026-10-02T11:00:00Z", "e-07", {"arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/web-profile"}
        ),
        _iam("RemoveRoleFromInstanceProfile", batch, "2026-10-02T14:00:00.250Z", "e-08"),
        _iam("AddRoleToInstanceProfile", web, "2026-10-02T15:00:00Z", "e-09"),
        _run_instances("2026-10-02T16:00:00Z", "e-10", {"name": "web-profile"}),
    ]
    day = folder / "AWSLogs" / ACCOUNT / "CloudTrail" / "us-east-1" / PROFILE_DAY
    day.mkdir(parents=True)
    for stamp, records in (("0900Z_a1", first), ("1600Z_b2", second)):
        name = f"{ACCOUNT}_CloudTrail_us-east-1_{PROFILE_DAY.replace('/', '')}T{stamp}.json.gz"
        (day / name).write_bytes(gzip.compress(json.dumps({"Records": records}).encode()))
    return folder / "AWSLogs"


# What profile_trail's changes are, as local ingest stores them (time as the record wrote it).
PROFILE_CHANGES = [
    ("2026-10-02T08:00:00Z", "create", "", "e-01"),
    ("2026-10-02T08:01:00Z", "add", WEB_ROLE, "e-02"),
    ("2026-10-02T10:00:00Z", "add", BATCH_ROLE, "e-05"),
    ("2026-10-02T10:00:00Z", "remove", WEB_ROLE, "e-04"),
    ("2026-10-02T14:00:00.250Z", "remove", BATCH_ROLE, "e-08"),
    ("2026-10-02T15:00:00Z", "add", WEB_ROLE, "e-09"),
]


def profile_changes_table(store: Store) -> list[tuple[str, str, str, str]]:
    out = []
    for c in store.profile_changes():
        assert (c.account, c.profile) == (ACCOUNT, "web-profile")
        out.append((c.time, str(c.kind), c.role, c.event_id))
    return out


def usage_table(store: Store) -> dict[tuple[str, ...], tuple[Any, ...]]:
    return {
        (r.principal, r.action, r.resource, r.outcome, r.context): (
            r.count,
            r.first_seen,
            r.last_seen,
            r.key_sketch,  # a fold's distinct keys: the reduced rows keep every key, so exact too
        )
        for r in store.stored_rows()
    }


def samples_table(store: Store) -> dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]]:
    return {
        (r.principal, r.action, r.resource, r.outcome, r.context): (r.event_ids, r.source_ips)
        for r in store.stored_rows()
    }


def coverage_table(store: Store) -> list[tuple[Any, ...]]:
    return sorted(
        (c.account, c.region, c.day, c.data_source, c.complete, c.records) for c in store.coverage()
    )


def files_table(store: Store) -> list[tuple[Any, ...]]:
    return sorted(
        (f.digest, f.path, f.size, f.format, f.records, f.malformed, f.error) for f in store.files()
    )


def event_days_table(store: Store) -> dict[str, list[int]]:
    """The hashes of the counted events, by day (``event_days``): the same set either way."""
    return {day: list(store.day_hashes(day)) for day in sorted(store.event_days())}


def assert_same_store(engine: Store, local: Store, *, files: bool = True, hashes: bool = True) -> None:
    """*engine* holds exactly what *local* (a local ingest) holds; see the module docstring."""
    got, want = usage_table(engine), usage_table(local)
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"missing {missing}, extra {extra}"
    wrong = [(k, got[k], want[k]) for k in sorted(want) if got[k] != want[k]][:5]
    assert not wrong, wrong
    assert coverage_table(engine) == coverage_table(local)
    assert sorted(engine.skip_details()) == sorted(local.skip_details())
    assert engine.principals() == local.principals()
    assert engine.profile_changes() == local.profile_changes()
    if files:
        assert files_table(engine) == files_table(local)
    if files and hashes:  # an engine that reads the files itself (Athena's query keeps none)
        assert event_days_table(engine) == event_days_table(local)
    got_samples, want_samples = samples_table(engine), samples_table(local)
    for k, (eids, ips) in want_samples.items():
        g_eids, g_ips = got_samples[k]
        assert bool(g_eids) == bool(eids) and bool(g_ips) == bool(ips), k
        assert len(set(g_eids)) == len(g_eids) and len(set(g_ips)) == len(g_ips), k
