"""``ingest --engine athena``: start, poll, page, errors and the cost line, against botocore's
Stubber with responses in the shapes the Athena API reference documents (moto's Athena returns no
real result rows). The result rows are the reduction's rows computed by DuckDB over the sample
trail (test_engines_sql's table), as Athena returns them: every value as text, the header first.

https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryResults.html
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from iamtrim.aws import Aws, AwsConfig
from iamtrim.engines.athena import PAGE_ROWS, ingest_athena
from iamtrim.engines.sql import SQL_COLUMNS, Window
from iamtrim.errors import AwsError
from iamtrim.ingest import ingest
from iamtrim.store import Store
from tests.awsparts import FAKE_ENV
from tests.engine_compare import assert_same_store
from tests.test_aws import cli
from tests.test_engines_sql import _TABLE, _VIEW, duckdb

QUERY_ID = "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"
WINDOW = Window(date(2026, 10, 1), date(2026, 10, 31))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Aws:
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    return Aws(AwsConfig(region="us-east-1"))


def _sample_rows(samples: Path) -> list[tuple[Any, ...]]:
    from iamtrim.engines.sql import reduction_query

    files = sorted((samples / "AWSLogs").rglob("*.json.gz"))
    con = duckdb.connect()
    con.execute(_VIEW.format(files="[" + ", ".join(f"'{f}'" for f in files) + "]"))
    con.execute(_TABLE.format())
    return con.execute(reduction_query("trail", WINDOW, dialect="duckdb")).fetchall()


def _text(value: Any) -> dict[str, str]:
    """A value as Athena's result set holds it: text, or no VarCharValue for NULL."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"VarCharValue": "true" if value else "false"}
    return {"VarCharValue": str(value)}


def _pages(rows: list[tuple[Any, ...]], size: int) -> list[dict[str, Any]]:
    header = {"Data": [{"VarCharValue": c} for c in SQL_COLUMNS]}
    all_rows = [header] + [{"Data": [_text(v) for v in r]} for r in rows]
    pages = []
    for i in range(0, len(all_rows), size):
        page: dict[str, Any] = {"ResultSet": {"Rows": all_rows[i : i + size]}}
        if i + size < len(all_rows):
            page["NextToken"] = f"token-{i + size}"
        pages.append(page)
    return pages


def _execution(state: str, scanned: int = 0, reason: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    return {
        "QueryExecution": {
            "QueryExecutionId": QUERY_ID,
            "Status": status,
            "Statistics": {"DataScannedInBytes": scanned, "EngineExecutionTimeInMillis": 4321},
        }
    }


def _queue_start(stub: Stubber) -> None:
    stub.add_response(
        "start_query_execution",
        {"QueryExecutionId": QUERY_ID},
        {"QueryString": ANY, "QueryExecutionContext": {"Database": "trails"}, "WorkGroup": "security"},
    )


def test_athena_run_stores_what_local_ingest_stores(aws: Aws, samples: Path, tmp_path: Path) -> None:
    rows = _sample_rows(samples)
    pages = _pages(rows, 7)  # several pages: the paging is exercised
    assert len(pages) > 2
    slept: list[float] = []
    with Stubber(aws.client("athena")) as stub:
        _queue_start(stub)
        stub.add_response("get_query_execution", _execution("QUEUED"), {"QueryExecutionId": QUERY_ID})
        stub.add_response("get_query_execution", _execution("RUNNING"), {"QueryExecutionId": QUERY_ID})
        stub.add_response(
            "get_query_execution", _execution("SUCCEEDED", 123_456_789), {"QueryExecutionId": QUERY_ID}
        )
        for i, page in enumerate(pages):
            params: dict[str, Any] = {"QueryExecutionId": QUERY_ID, "MaxResults": PAGE_ROWS}
            if i:
                params["NextToken"] = pages[i - 1]["NextToken"]
            stub.add_response("get_query_results", page, params)
        store = Store(tmp_path / "engine.sqlite")
        report, run = ingest_athena(
            aws, store, "trails.cloudtrail_logs", "security", WINDOW, sleep=slept.append
        )
        stub.assert_no_pending_responses()
    assert slept == [1.0, 2.0]  # backs off while queued and running
    assert run is not None and report is not None
    assert run.bytes_scanned == 123_456_789 and run.rows == len(rows)
    assert "123,456,789 bytes scanned" in run.describe() and "$0.0006" in run.describe()
    local = Store(tmp_path / "local.sqlite")
    ingest([samples / "AWSLogs"], local, workers=1)
    assert_same_store(store, local, files=False)
    # The same window again is found in the store and not queried (no stubbed response left).
    with Stubber(aws.client("athena")):
        assert ingest_athena(aws, store, "trails.cloudtrail_logs", "security", WINDOW) == (None, None)


def test_failed_query_is_one_line_with_athena_reason(aws: Aws, tmp_path: Path) -> None:
    with Stubber(aws.client("athena")) as stub:
        _queue_start(stub)
        stub.add_response(
            "get_query_execution",
            _execution(
                "FAILED", 2048, "TABLE_NOT_FOUND: line 3:17: Table 'trails.cloudtrail_logs'\ndoes not exist"
            ),
            {"QueryExecutionId": QUERY_ID},
        )
        store = Store(tmp_path / "s.sqlite")
        with pytest.raises(AwsError) as err:
            ingest_athena(aws, store, "trails.cloudtrail_logs", "security", WINDOW, sleep=lambda s: None)
    message = str(err.value)
    assert "\n" not in message and "TABLE_NOT_FOUND" in message and "2,048 bytes scanned" in message
    assert list(store.stored_rows()) == [] and store.files() == []  # nothing stored


def test_access_denied_names_the_action(aws: Aws, tmp_path: Path) -> None:
    with Stubber(aws.client("athena")) as stub:
        stub.add_client_error(
            "start_query_execution",
            "AccessDeniedException",
            "User: arn:aws:iam::111122223333:user/x is not authorized to perform: "
            "athena:StartQueryExecution on resource: "
            "arn:aws:athena:us-east-1:111122223333:workgroup/security",
        )
        with pytest.raises(AwsError, match=r"access denied: iamtrim needs athena:StartQueryExecution"):
            ingest_athena(aws, Store(tmp_path / "s.sqlite"), "trails.cloudtrail_logs", "security", WINDOW)


def test_unexpected_columns_refused(aws: Aws, tmp_path: Path) -> None:
    with Stubber(aws.client("athena")) as stub:
        _queue_start(stub)
        stub.add_response("get_query_execution", _execution("SUCCEEDED", 10), {"QueryExecutionId": QUERY_ID})
        stub.add_response(
            "get_query_results",
            {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": "eventname"}]}]}},
            {"QueryExecutionId": QUERY_ID, "MaxResults": PAGE_ROWS},
        )
        with pytest.raises(AwsError, match="unexpected columns"):
            ingest_athena(aws, Store(tmp_path / "s.sqlite"), "trails.cloudtrail_logs", "security", WINDOW)


def test_cli_engine_athena(aws: Aws, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole command (moto's Athena speaks the protocol botocore used before 1.40, not
    rest-json: Stubber it is). The cost line is printed, and the store equals a local ingest."""
    from iamtrim import cli as cli_module

    monkeypatch.setattr(cli_module, "_aws", lambda *a: aws)
    rows = _sample_rows(samples)
    store = tmp_path / "s.sqlite"
    args = ["ingest", "--engine", "athena", "--table", "trails.cloudtrail_logs", "--since", "2026-10-01"]
    args += ["--until", "2026-10-31", "--store", str(store), "--workgroup", "security"]
    with Stubber(aws.client("athena")) as stub:
        _queue_start(stub)
        stub.add_response(
            "get_query_execution", _execution("SUCCEEDED", 5 * 1024**3), {"QueryExecutionId": QUERY_ID}
        )
        stub.add_response(
            "get_query_results",
            _pages(rows, len(rows) + 1)[0],
            {"QueryExecutionId": QUERY_ID, "MaxResults": PAGE_ROWS},
        )
        code, out, err = cli(*args)
    assert code == 0, err
    assert out.startswith(f"athena: query {QUERY_ID}: 5,368,709,120 bytes scanned (about $0.0244 at $5/TB)")
    assert "usage keys:" in out
    local = Store(tmp_path / "local.sqlite")
    ingest([samples / "AWSLogs"], local, workers=1)
    assert_same_store(Store(store), local, files=False)
    with Stubber(aws.client("athena")):
        code, out, err = cli(*args)  # the same window again: nothing queried
    assert code == 0 and "already in" in err and out == ""


@pytest.mark.parametrize(
    "args,message",
    [
        (["ingest", "--engine", "athena", "--since", "2026-10-01"], "--engine athena reads --table"),
        (["ingest", "--engine", "athena", "--table", "t", "--since", "x"], "--since 'x'"),
        (["ingest", "--engine", "athena", "--table", "db.t; x", "--since", "1d"], "--table 'db.t; x'"),
        (["ingest", "--engine", "athena", "--table", "db.t"], "needs --since"),
        (["ingest", "samples/AWSLogs", "--until", "2026-10-01"], "also with --engine athena"),
        (["athena", "ddl", "s3://trail-bucket/logs/"], "give the trail's S3 location"),
        (["athena", "ddl", "s3://trail-bucket/AWSLogs/o-abcdefghij/"], "--accounts"),
    ],
)
def test_cli_bad_options_one_line(args: list[str], message: str) -> None:
    code, out, err = cli(*args)
    assert code in (2, 4) and out == ""
    assert err.count("\n") == 1 and message in err, err
