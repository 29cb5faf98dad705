"""The reduction's SQL, run for real: its Trino (Athena) form, transpiled by sqlglot, on DuckDB over
the sample trail files laid out as Athena's CloudTrail table; the store its rows build must equal
a local ingest of the same files, row for row (docs/scale.md, "The contract")."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import sqlglot

from iamtrim.engines.reduce import Reduction, store_reduction
from iamtrim.engines.sql import SQL_COLUMNS, Window, reduced_rows, reduction_query, table_ddl
from iamtrim.errors import InputError
from iamtrim.ingest import ingest
from iamtrim.store import Store
from tests.engine_compare import (
    PROFILE_CHANGES,
    assert_same_store,
    bench_trail,
    coverage_table,
    profile_changes_table,
    profile_trail,
    usage_table,
)

__all__ = ["bench_trail"]  # a fixture

duckdb = pytest.importorskip("duckdb", reason="duckdb (the dev extra) runs the reduction's SQL")

# Athena's CloudTrail table (engines/sql.py _COLUMNS_DDL) over trail files, in DuckDB: each
# record's fields as the SerDe gives them (objects of unknown shape as JSON text, known structs as
# structs), and the partition columns from the file's key.
_VIEW = """
CREATE VIEW cloudtrail AS
WITH files AS (
  SELECT unnest(Records) AS r, filename AS "$path"
  FROM read_json({files}, filename = true, columns = {{'Records': 'JSON[]'}}, format = 'auto')
)
SELECT
  r->>'eventVersion' AS eventversion,
  CASE WHEN json_type(r->'userIdentity') = 'OBJECT' THEN json_transform(r->'userIdentity',
    '{{"type":"VARCHAR","principalId":"VARCHAR","arn":"VARCHAR","accountId":"VARCHAR",
      "invokedBy":"VARCHAR","userName":"VARCHAR","identityProvider":"VARCHAR",
      "sessionContext":{{"sessionIssuer":{{"type":"VARCHAR","arn":"VARCHAR","accountId":"VARCHAR",
      "userName":"VARCHAR"}},"webIdFederationData":{{"federatedProvider":"VARCHAR"}}}}}}')
  END AS ui,
  r->>'eventTime' AS eventtime,
  r->>'eventSource' AS eventsource,
  r->>'eventName' AS eventname,
  r->>'awsRegion' AS awsregion,
  r->>'sourceIPAddress' AS sourceipaddress,
  r->>'errorCode' AS errorcode,
  r->>'errorMessage' AS errormessage,
  CASE WHEN json_type(r->'requestParameters') NOT IN ('NULL') THEN CAST(r->'requestParameters' AS VARCHAR) END
    AS requestparameters,
  CASE WHEN json_type(r->'responseElements') NOT IN ('NULL') THEN CAST(r->'responseElements' AS VARCHAR) END
    AS responseelements,
  CASE WHEN json_type(r->'additionalEventData') NOT IN ('NULL') THEN CAST(r->'additionalEventData' AS VARCHAR)
    END AS additionaleventdata,
  r->>'eventID' AS eventid,
  CASE WHEN json_type(r->'resources') = 'ARRAY' THEN
    json_transform(r->'resources', '[{{"ARN":"VARCHAR","accountId":"VARCHAR","type":"VARCHAR"}}]') END
    AS res,
  r->>'eventType' AS eventtype,
  r->>'apiVersion' AS apiversion,
  r->>'recipientAccountId' AS recipientaccountid,
  r->>'vpcEndpointId' AS vpcendpointid,
  r->>'eventCategory' AS eventcategory,
  r->'tlsDetails'->>'tlsVersion' AS tls,
  "$path",
  regexp_extract("$path", 'AWSLogs/([0-9]{{12}})/', 1) AS account,
  regexp_extract("$path", 'CloudTrail/([a-z0-9-]+)/', 1) AS region,
  regexp_extract("$path", '/([0-9]{{4}}/[0-9]{{2}}/[0-9]{{2}})/[^/]+$', 1) AS day
FROM files
"""

# Lower-cased struct fields, as Athena's SerDe names them.
_TABLE = """
CREATE VIEW trail AS SELECT
  eventversion,
  CASE WHEN ui IS NOT NULL THEN {{
    'type': ui.type, 'principalid': ui.principalId, 'arn': ui.arn, 'accountid': ui.accountId,
    'invokedby': ui.invokedBy, 'username': ui.userName, 'identityprovider': ui.identityProvider,
    'sessioncontext': CASE WHEN ui.sessionContext IS NOT NULL THEN {{
      'sessionissuer': CASE WHEN ui.sessionContext.sessionIssuer IS NOT NULL THEN {{
        'type': ui.sessionContext.sessionIssuer.type, 'arn': ui.sessionContext.sessionIssuer.arn,
        'accountid': ui.sessionContext.sessionIssuer.accountId,
        'username': ui.sessionContext.sessionIssuer.userName}} END,
      'webidfederationdata': CASE WHEN ui.sessionContext.webIdFederationData IS NOT NULL THEN {{
        'federatedprovider': ui.sessionContext.webIdFederationData.federatedProvider}} END}} END
  }} END AS useridentity,
  eventtime, eventsource, eventname, awsregion, sourceipaddress, errorcode, errormessage,
  requestparameters, responseelements, additionaleventdata, eventid,
  CASE WHEN res IS NOT NULL THEN list_transform(res, lambda x: {{'arn': x.ARN, 'accountid': x.accountId,
    'type': x.type}}) END AS resources,
  eventtype, apiversion, recipientaccountid, vpcendpointid, eventcategory,
  {{'tlsversion': tls}} AS tlsdetails,
  "$path", account, region, day
FROM cloudtrail
"""


def _duckdb_store(files: list[Path], tmp_path: Path, window: Window | None = None) -> tuple[Store, int]:
    con = duckdb.connect()
    listed = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    con.execute(_VIEW.format(files=listed))
    con.execute(_TABLE.format())
    query = reduction_query("trail", window, dialect="duckdb")
    cursor = con.execute(query)
    assert tuple(d[0] for d in cursor.description) == SQL_COLUMNS
    rows = list(reduced_rows(cursor.fetchall()))
    store = Store(tmp_path / "engine.sqlite")
    store_reduction(Reduction(rows=rows), store)
    return store, len(rows)


def _trail_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json.gz"))


def test_samples_sql_same_store(samples: Path, tmp_path: Path) -> None:
    files = _trail_files(samples / "AWSLogs")
    engine, rows = _duckdb_store(files, tmp_path)
    local = Store(tmp_path / "local.sqlite")
    ingest(files, local, workers=1)
    assert rows > 10
    assert_same_store(engine, local, files=False)


def test_benchmark_trail_sql_same_store(bench_trail: Path, tmp_path: Path) -> None:
    files = _trail_files(bench_trail)
    engine, _ = _duckdb_store(files, tmp_path)
    local = Store(tmp_path / "local.sqlite")
    ingest(files, local, workers=1)
    assert_same_store(engine, local, files=False)
    assert any(k[2].endswith("/*") for k in usage_table(local))
    # and every fold carries the sketch of its keys, equal in both stores (assert_same_store)
    assert all(v[3] for k, v in usage_table(local).items() if ":s3:::" in k[2] and k[2].endswith("/*"))


def test_duplicates_across_files_kept_once(samples: Path, tmp_path: Path) -> None:
    """A trail file delivered twice (CloudTrail may deliver a file again): each event once."""
    files = _trail_files(samples / "AWSLogs")
    copy = tmp_path / "AWSLogs" / "444455556666" / "CloudTrail" / "us-east-1" / "2026" / "10" / "09"
    copy.mkdir(parents=True)
    dup = copy / files[0].name.replace("_CloudTrail_", "_CloudTrail_").replace(".json.gz", "x.json.gz")
    records = json.loads(gzip.decompress(files[0].read_bytes()))["Records"]
    dup.write_bytes(gzip.compress(json.dumps({"Records": records[::-1]}).encode()))
    shutil.copy(files[1], copy / files[1].name)  # the same bytes again
    engine, _ = _duckdb_store([*files, *_trail_files(tmp_path / "AWSLogs")], tmp_path)
    local = Store(tmp_path / "local.sqlite")
    ingest(files, local, workers=1)
    # The local store holds each file once; the engine dropped every copy as a duplicate.
    got, want = usage_table(engine), usage_table(local)
    assert got == want


def test_window_scans_only_its_days(samples: Path, tmp_path: Path) -> None:
    files = _trail_files(samples / "AWSLogs")
    engine, _ = _duckdb_store(files, tmp_path, Window(date(2026, 10, 2), date(2026, 10, 3)))
    rows = list(engine.stored_rows())
    assert rows
    assert all(r.first_seen >= "2026-10-02" and r.last_seen < "2026-10-04" for r in rows)
    query = reduction_query("db.trail", Window(date(2026, 10, 2), date(2026, 10, 3)))
    assert "day BETWEEN '2026/10/01' AND '2026/10/04'" in query


def test_query_parses_in_athena_dialect() -> None:
    query = reduction_query("db.cloudtrail_logs", Window(date(2026, 1, 1), date(2026, 1, 31)))
    parsed = sqlglot.parse_one(query, read="athena")
    assert parsed.find(sqlglot.exp.Window) is not None  # the dedup
    with pytest.raises(InputError):
        reduction_query("db.t; DROP TABLE x")


def test_ddl_org_and_account_trails() -> None:
    org = table_ddl(
        "s3://trail-bucket/AWSLogs/o-abcdefghij/", "db.org_trail", accounts=["111122223333", "444455556666"]
    )
    assert "LOCATION 's3://trail-bucket/AWSLogs/o-abcdefghij/'" in org
    assert "'storage.location.template'='s3://trail-bucket/AWSLogs/o-abcdefghij/${account}/CloudTrail/" in org
    assert "'projection.account.values'='111122223333,444455556666'" in org
    assert "PARTITIONED BY (account STRING, region STRING, day STRING)" in org
    one = table_ddl("s3://trail-logs/logs/AWSLogs/111122223333/", regions=["us-east-1", "eu-west-1"])
    assert "'projection.account.values'='111122223333'" in one
    assert "'projection.region.values'='eu-west-1,us-east-1'" in one
    assert (
        "'storage.location.template'='s3://trail-logs/logs/AWSLogs/${account}/CloudTrail/${region}/${day}'"
        in one
    )
    for bad in ("s3://b/somewhere/", "https://b/AWSLogs/", "s3://b/AWSLogs/o-abcdefghij/"):
        with pytest.raises(InputError):
            table_ddl(bad)


def test_instance_profile_changes_same_as_local(tmp_path: Path) -> None:
    """The SQL's ``event_key`` (a CASE in the select and GROUP BY) makes each instance-profile
    call its own row: the store's changes, with the times as written, equal local ingest's."""
    files = _trail_files(profile_trail(tmp_path / "trail"))
    local = Store(tmp_path / "local.sqlite")
    ingest(files, local, workers=1)
    engine, rows = _duckdb_store(files, tmp_path)
    assert profile_changes_table(local) == PROFILE_CHANGES
    assert engine.profile_changes() == local.profile_changes()
    # The rest as assert_same_store, but for the copy's duplicate-event skip (a query counts none).
    assert usage_table(engine) == usage_table(local)
    assert coverage_table(engine) == coverage_table(local)
    assert engine.principals() == local.principals()
    dup = "duplicate-event"
    assert sorted(s for s in engine.skip_details() if s[0] != dup) == sorted(
        s for s in local.skip_details() if s[0] != dup
    )
    assert rows == 9
