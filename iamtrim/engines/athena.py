"""Run the reduction in Amazon Athena and store its rows (``iamtrim ingest --engine athena``).

The query (``engines.sql.reduction_query``) is started in the caller's workgroup, polled until it
ends, and its result pages are read and normalized like any engine's rows (``engines.reduce``).
Athena bills the bytes it scans; they are reported after every run.
https://docs.aws.amazon.com/athena/latest/APIReference/API_StartQueryExecution.html
https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryExecution.html
https://docs.aws.amazon.com/athena/latest/APIReference/API_GetQueryResults.html
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from iamtrim.aws import Aws
from iamtrim.engines.reduce import Reduction, store_reduction
from iamtrim.engines.sql import SQL_COLUMNS, Window, check_table, reduced_rows, reduction_query
from iamtrim.errors import AwsError, OptionsError
from iamtrim.ingest import IngestReport
from iamtrim.query import parse_window
from iamtrim.store import FileEntry, Store

# Athena's price per TB scanned in most regions (SQL queries, 10 MB minimum per query):
# https://aws.amazon.com/athena/pricing/
DOLLARS_PER_TB = 5.0
MIN_BILLED_BYTES = 10 * 1024**2
PAGE_ROWS = 1000  # GetQueryResults' MaxResults limit
_DONE = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class AthenaRun:
    """One finished query: its id, what it scanned, and how long Athena took."""

    query_id: str
    bytes_scanned: int
    engine_ms: int
    rows: int
    state: str = "SUCCEEDED"

    @property
    def dollars(self) -> float:
        billed = max(self.bytes_scanned, MIN_BILLED_BYTES) if self.bytes_scanned else 0
        return billed / 1024**4 * DOLLARS_PER_TB

    def describe(self) -> str:
        return (
            f"athena: query {self.query_id}: {self.bytes_scanned:,} bytes scanned "
            f"(about ${self.dollars:.4f} at ${DOLLARS_PER_TB:g}/TB), {self.rows} reduced rows, "
            f"{self.engine_ms / 1000:.1f}s in Athena"
        )


def start_query(aws: Aws, query: str, database: str, workgroup: str) -> str:
    response = aws.call(
        "athena",
        "StartQueryExecution",
        resource=f"workgroup/{workgroup}",
        QueryString=query,
        QueryExecutionContext={"Database": database},
        WorkGroup=workgroup,
    )
    assert response is not None
    return str(response["QueryExecutionId"])


def wait_for(
    aws: Aws,
    query_id: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    first_wait: float = 1.0,
    max_wait: float = 20.0,
    timeout: float = 6 * 3600,
) -> Mapping[str, Any]:
    """Poll GetQueryExecution until the query ends (backing off from *first_wait* to *max_wait*
    seconds); its QueryExecution. A failed or cancelled query is an AwsError with Athena's reason."""
    waited, pause = 0.0, first_wait
    while True:
        response = aws.call("athena", "GetQueryExecution", QueryExecutionId=query_id)
        assert response is not None
        execution = response["QueryExecution"]
        status = execution.get("Status", {})
        state = status.get("State", "")
        if state == "SUCCEEDED":
            return execution  # type: ignore[no-any-return]
        if state in _DONE:
            reason = " ".join(str(status.get("StateChangeReason", "")).split()) or "no reason given"
            scanned = execution.get("Statistics", {}).get("DataScannedInBytes", 0)
            raise AwsError(f"athena: query {query_id} {state.lower()}: {reason} ({scanned:,} bytes scanned)")
        if waited >= timeout:
            raise AwsError(f"athena: query {query_id} still {state or 'queued'} after {timeout:.0f}s")
        sleep(pause)
        waited += pause
        pause = min(pause * 2, max_wait)


def result_rows(aws: Aws, query_id: str) -> Iterator[list[str | None]]:
    """Every result row as text values (None for NULL), the header row left out."""
    header = True
    for page in aws.paginate(
        "athena", "GetQueryResults", QueryExecutionId=query_id, PaginationConfig={"PageSize": PAGE_ROWS}
    ):
        for row in page.get("ResultSet", {}).get("Rows", []):
            values = [d.get("VarCharValue") for d in row.get("Data", [])]
            if header:
                header = False
                if tuple(values) != SQL_COLUMNS:
                    raise AwsError(f"athena: query {query_id} returned unexpected columns {values[:3]}...")
                continue
            yield values


def run_reduction(
    aws: Aws,
    table: str,
    workgroup: str,
    window: Window,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Reduction, AthenaRun]:
    """Run the reduction over *table* (``DB.TABLE``) for *window* in *workgroup*."""
    check_table(table)
    database = table.rpartition(".")[0]
    query = reduction_query(table, window)
    query_id = start_query(aws, query, database or "default", workgroup)
    execution = wait_for(aws, query_id, sleep=sleep)
    rows = list(reduced_rows(result_rows(aws, query_id)))
    stats = execution.get("Statistics", {})
    scanned = int(stats.get("DataScannedInBytes", 0))
    run = AthenaRun(query_id, scanned, int(stats.get("EngineExecutionTimeInMillis", 0)), len(rows))
    return Reduction(rows=rows), run


def athena_window(since: str, until: str) -> Window:
    """The whole UTC days ``--since``..``--until`` name (until defaults to today)."""
    if not since:
        raise OptionsError("--engine athena needs --since (the first day to read: 2026-10-01 or 90d)")
    window = parse_window(since, until or None)
    today = datetime.now(UTC).date()
    return Window(
        date.fromisoformat(window.first_day), date.fromisoformat(window.last_day) if until else today
    )


def run_entry(table: str, window: Window, records: int) -> FileEntry:
    """The files-table entry recording an Athena run over *table* and *window*: a second run of
    the same window finds it and stores nothing (docs/scale.md)."""
    path = f"athena://{table}/{window.since.isoformat()}..{window.until.isoformat()}"
    digest = hashlib.sha256(path.encode()).hexdigest()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return FileEntry(digest, path, 0, 0, "athena", records, 0, "", now)


def ingest_athena(
    aws: Aws,
    store: Store,
    table: str,
    workgroup: str,
    window: Window,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[IngestReport | None, AthenaRun | None]:
    """Reduce in Athena and store the rows; (None, None) when the window was already stored."""
    entry = run_entry(table, window, 0)
    if entry.digest in store.known_digests():
        return None, None
    started = time.perf_counter()
    reduction, run = run_reduction(aws, table, workgroup, window, sleep=sleep)
    entry = run_entry(table, window, reduction.records_in)
    report = store_reduction(reduction, store, source=entry)
    report.files_read = 1
    report.seconds = time.perf_counter() - started
    return report, run
