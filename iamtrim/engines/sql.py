"""The reduction as SQL (Athena/Trino, transpiled by sqlglot), and the Athena table it reads.

The query is written once, in Trino's dialect (Athena engine version 3 is Trino), and transpiled
by ``sqlglot`` for other engines (DuckDB runs it in the tests over the samples, and its result
must give the store a local ingest gives). It computes ``engines.reduce``'s reduction: the same
deduplication, group key and aggregates (docs/scale.md).

The table is the one AWS documents for CloudTrail logs, with partition projection on account,
region and day so a query scans only the days of its window:
https://docs.aws.amazon.com/athena/latest/ug/create-cloudtrail-table-partition-projection.html
https://docs.aws.amazon.com/athena/latest/ug/partition-projection-supported-types.html
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import msgspec
import sqlglot

from iamtrim.engines.reduce import KEY_COLUMNS, ReducedRow
from iamtrim.errors import InputError
from iamtrim.model.usage import SAMPLE_EVENT_IDS, SAMPLE_SOURCE_IPS
from iamtrim.normalize.record import PROFILE_EVENTS, PROFILE_SOURCE

# The identity fields the normalizer reads (sources.records.UserIdentity), as columns: Athena
# lower-cases struct field names, so the JSON object is rebuilt here with CloudTrail's names.
_IDENTITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ui_present", "useridentity IS NOT NULL"),
    ("ui_type", "useridentity.type"),
    ("ui_principal_id", "useridentity.principalid"),
    ("ui_arn", "useridentity.arn"),
    ("ui_account_id", "useridentity.accountid"),
    ("ui_user_name", "useridentity.username"),
    ("ui_invoked_by", "useridentity.invokedby"),
    ("ui_identity_provider", "useridentity.identityprovider"),
    ("sc_present", "useridentity.sessioncontext IS NOT NULL"),
    ("si_present", "useridentity.sessioncontext.sessionissuer IS NOT NULL"),
    ("si_type", "useridentity.sessioncontext.sessionissuer.type"),
    ("si_arn", "useridentity.sessioncontext.sessionissuer.arn"),
    ("si_account_id", "useridentity.sessioncontext.sessionissuer.accountid"),
    ("si_user_name", "useridentity.sessioncontext.sessionissuer.username"),
    ("wif_present", "useridentity.sessioncontext.webidfederationdata IS NOT NULL"),
    ("wif_provider", "useridentity.sessioncontext.webidfederationdata.federatedprovider"),
)

# A time a trail wrote, as normalize.record._TIME (the day's calendar and range are checked in
# Python, from first_seen: a bad day then skips the whole group as it skips each record).
_TIME_PATTERN = r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z?\z"

# What a record without an eventID is known by (ingest.content_hash reads the same fields).
_CONTENT = (
    "eventsource",
    "awsregion",
    "sourceipaddress",
    "requestparameters",
    "errorcode",
    "recipientaccountid",
    "useridentity.arn",
    "useridentity.principalid",
)

# Source IPs that are an AWS service, not an address (normalize.record._source_ip_kind).
_IP_KIND = (
    "CASE WHEN sourceipaddress IS NULL OR sourceipaddress = '' THEN '' "
    "WHEN sourceipaddress LIKE '%.amazonaws.com' OR sourceipaddress = 'AWS Internal' THEN 'service' "
    "ELSE 'ip' END"
)

_PROFILE_NAMES = ", ".join(f"'{name}'" for name in sorted(PROFILE_EVENTS))

_KEY_SQL: tuple[tuple[str, str], ...] = (
    ("api_version", "apiversion"),
    ("event_source", "eventsource"),
    ("event_name", "eventname"),
    ("event_type", "eventtype"),
    ("event_category", "eventcategory"),
    ("aws_region", "awsregion"),
    ("error_code", "errorcode"),
    ("error_message", "errormessage"),
    ("recipient_account_id", "recipientaccountid"),
    ("vpc_endpoint_id", "vpcendpointid"),
    *_IDENTITY_COLUMNS,
    ("request_parameters", "requestparameters"),
    ("response_elements", "responseelements"),
    (
        "resource_arns",
        "CASE WHEN resources IS NULL THEN NULL "
        "ELSE json_format(CAST(transform(resources, r -> r.arn) AS JSON)) END",
    ),
    ("sse_applied", "json_extract_scalar(additionaleventdata, '$.SSEApplied')"),
    ("tls_version", "tlsdetails.tlsversion"),
    ("source_ip_kind", _IP_KIND),
    ("day", "CASE WHEN time_ok THEN substr(eventtime, 1, 10) ELSE '' END"),
    ("bad_time", "CASE WHEN time_ok THEN NULL ELSE coalesce(eventtime, '') END"),
    ("complete", "\"$path\" LIKE '%\\_CloudTrail\\_%' ESCAPE '\\'"),
    # Each instance-profile call its own group (engines.reduce.event_key): raw eventID|eventTime.
    (
        "event_key",
        f"CASE WHEN eventsource = '{PROFILE_SOURCE}' AND eventname IN ({_PROFILE_NAMES}) "
        "THEN coalesce(eventid, '') || '|' || coalesce(eventtime, '') END",
    ),
)
SQL_COLUMNS = (
    *(name for name, _ in _KEY_SQL),
    "records",
    "first_seen",
    "last_seen",
    "event_ids",
    "source_ips",
)


@dataclass(frozen=True, slots=True)
class Window:
    """Days to reduce, both included (UTC), and the partitions to scan."""

    since: date
    until: date

    def partition_days(self) -> tuple[str, str]:
        """The ``day`` partitions to read: a day more on each side, since a file is delivered under
        the day it was written, up to about 15 minutes after its events (CloudTrail's delivery):
        https://docs.aws.amazon.com/awscloudtrail/latest/userguide/how-cloudtrail-works.html"""
        return (
            (self.since - timedelta(days=1)).strftime("%Y/%m/%d"),
            (self.until + timedelta(days=1)).strftime("%Y/%m/%d"),
        )


_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?\Z")


def check_table(table: str) -> str:
    """*table* (``DB.TABLE`` or ``TABLE``) if it is a plain identifier, else InputError."""
    if not _NAME.match(table):
        raise InputError(f"--table {table!r}: give DB.TABLE (letters, digits, underscores)")
    return table


def reduction_query(table: str, window: Window | None = None, dialect: str = "trino") -> str:
    """The reduction (docs/scale.md) over *table*, for *dialect* (``trino`` = Athena)."""
    check_table(table)
    where = ["TRUE"]
    if window is not None:
        first, last = window.partition_days()
        until = (window.until + timedelta(days=1)).isoformat()
        # Partition predicates first (only those days are listed and read), then the exact window.
        where.append(f"day BETWEEN '{first}' AND '{last}'")
        where.append(f"eventtime >= '{window.since.isoformat()}' AND eventtime < '{until}'")
    partition = ", ".join(
        ["eventid", "eventtime", "eventname"]
        + [f"CASE WHEN eventid IS NULL OR eventid = '' THEN {c} END" for c in _CONTENT]
    )
    keys = ",\n    ".join(f"{expr} AS {name}" for name, expr in _KEY_SQL)
    group = ", ".join(str(i + 1) for i in range(len(_KEY_SQL)))
    when = "substr(eventtime, 1, 10) || 'T' || substr(eventtime, 12, 8) || 'Z'"
    trino = f"""
WITH windowed AS (
  SELECT *, "$path" AS source_path FROM {table}
  WHERE {" AND ".join(where)}
),
firsts AS (
  SELECT *, regexp_like(coalesce(eventtime, ''), '{_TIME_PATTERN}') AS time_ok,
    row_number() OVER (PARTITION BY {partition} ORDER BY source_path) AS copy
  FROM windowed
)
SELECT
    {keys.replace('"$path"', "source_path")},
    count(*) AS records,
    min(CASE WHEN time_ok THEN {when} END) AS first_seen,
    max(CASE WHEN time_ok THEN {when} END) AS last_seen,
    json_format(CAST(min(eventid, {SAMPLE_EVENT_IDS}) AS JSON)) AS event_ids,
    json_format(CAST(min(sourceipaddress, {SAMPLE_SOURCE_IPS}) AS JSON)) AS source_ips
FROM firsts
WHERE copy = 1
GROUP BY {group}
"""
    if dialect == "trino":
        return sqlglot.transpile(trino, read="trino", write="trino", pretty=True)[0]
    return sqlglot.transpile(trino, read="trino", write=dialect, pretty=True)[0]


_ENCODE = msgspec.json.encode


def _identity_json(v: dict[str, Any]) -> str:
    if not v["ui_present"]:
        return "null"
    identity: dict[str, Any] = {
        "type": v["ui_type"],
        "principalId": v["ui_principal_id"],
        "arn": v["ui_arn"],
        "accountId": v["ui_account_id"],
        "userName": v["ui_user_name"],
        "invokedBy": v["ui_invoked_by"],
        "identityProvider": v["ui_identity_provider"],
    }
    if v["sc_present"]:
        context: dict[str, Any] = {}
        if v["si_present"]:
            context["sessionIssuer"] = {
                "type": v["si_type"],
                "arn": v["si_arn"],
                "accountId": v["si_account_id"],
                "userName": v["si_user_name"],
            }
        if v["wif_present"]:
            context["webIdFederationData"] = {"federatedProvider": v["wif_provider"]}
        identity["sessionContext"] = context
    return _ENCODE({k: x for k, x in identity.items() if x is not None}).decode()


def _distinct(values: Sequence[Any] | str | None, limit: int) -> tuple[str, ...]:
    """A sample as the query returns it (a JSON array, as text) → distinct values."""
    if isinstance(values, str):
        values = msgspec.json.decode(values)
    out: list[str] = []
    for value in values or ():
        if value and value not in out:
            out.append(str(value))
    return tuple(out[:limit])


def reduced_rows(rows: Iterable[Sequence[Any]]) -> Iterator[ReducedRow]:
    """Result rows of :func:`reduction_query` (SQL_COLUMNS, in order) → ``ReducedRow``."""
    for row in rows:
        v = dict(zip(SQL_COLUMNS, row, strict=True))
        v["user_identity"] = _identity_json(v)
        v["complete"] = _bool(v["complete"])
        key = tuple(v[c] for c in KEY_COLUMNS)
        yield ReducedRow(
            key,
            int(v["records"]),
            v["first_seen"] or "",
            v["last_seen"] or "",
            _distinct(v["event_ids"], SAMPLE_EVENT_IDS),
            _distinct(v["source_ips"], SAMPLE_SOURCE_IPS),
        )


def _bool(value: Any) -> bool:
    if isinstance(value, str):  # Athena returns every value as text
        return value.lower() == "true"
    return bool(value)


# -- the table -------------------------------------------------------------------------------------

_TRAIL_URL = re.compile(
    r"\As3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>(?:[^/]+/)*?)AWSLogs/?"
    r"(?:(?P<org>o-[a-z0-9]{10,32})/?)?(?:(?P<account>[0-9]{12})/?)?\Z"
)

# Regions a trail can log: the commercial regions (a trail logs every region it is enabled in);
# an org or account that uses others adds them with --regions.
# https://docs.aws.amazon.com/general/latest/gr/rande.html#regional-endpoints
DEFAULT_REGIONS = (
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)

_COLUMNS_DDL = """\
  eventversion STRING,
  useridentity STRUCT<
    type: STRING, principalid: STRING, arn: STRING, accountid: STRING, invokedby: STRING,
    accesskeyid: STRING, username: STRING, identityprovider: STRING,
    sessioncontext: STRUCT<
      attributes: STRUCT<mfaauthenticated: STRING, creationdate: STRING>,
      sessionissuer: STRUCT<
        type: STRING, principalid: STRING, arn: STRING, accountid: STRING, username: STRING>,
      webidfederationdata: STRUCT<federatedprovider: STRING>,
      sourceidentity: STRING>>,
  eventtime STRING,
  eventsource STRING,
  eventname STRING,
  awsregion STRING,
  sourceipaddress STRING,
  useragent STRING,
  errorcode STRING,
  errormessage STRING,
  requestparameters STRING,
  responseelements STRING,
  additionaleventdata STRING,
  requestid STRING,
  eventid STRING,
  readonly STRING,
  resources ARRAY<STRUCT<arn: STRING, accountid: STRING, type: STRING>>,
  eventtype STRING,
  apiversion STRING,
  recipientaccountid STRING,
  serviceeventdetails STRING,
  sharedeventid STRING,
  vpcendpointid STRING,
  eventcategory STRING,
  tlsdetails STRUCT<tlsversion: STRING, ciphersuite: STRING, clientprovidedhostheader: STRING>"""


def table_ddl(
    location: str,
    table: str = "cloudtrail_logs",
    *,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = DEFAULT_REGIONS,
    since: str = "2013/11/01",
) -> str:
    """``CREATE EXTERNAL TABLE`` for the trail under *location* (``s3://BUCKET/[prefix/]AWSLogs/``,
    with ``o-ORGID/`` for an organization trail, or ``ACCOUNT/`` for one account), partitioned by
    account, region and day with partition projection (no crawler, no ``MSCK REPAIR``).

    Projected accounts are an ``enum``: an account trail's from *location*, an organization
    trail's from *accounts* (partition projection cannot list S3)."""
    check_table(table)
    m = _TRAIL_URL.match(location)
    if not m:
        raise InputError(
            f"{location!r}: give the trail's S3 location, s3://BUCKET/[PREFIX/]AWSLogs/[o-ORGID/|ACCOUNT/]"
        )
    bucket, prefix, org, account = m["bucket"], m["prefix"], m["org"], m["account"]
    if account and accounts and list(accounts) != [account]:
        raise InputError(f"{location!r} is the trail of account {account}: --accounts must name only it")
    accounts = [account] if account else list(accounts)
    if not accounts:
        raise InputError("name the accounts whose logs the trail holds: --accounts 111122223333,...")
    for a in accounts:
        if not re.fullmatch(r"[0-9]{12}", a):
            raise InputError(f"--accounts: {a!r} is not a 12-digit account id")
    for r in regions:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", r):
            raise InputError(f"--regions: {r!r} is not a region name")
    if not re.fullmatch(r"[0-9]{4}/[0-9]{2}/[0-9]{2}", since):
        raise InputError(f"--since {since!r}: give YYYY/MM/DD")
    root = f"s3://{bucket}/{prefix}AWSLogs/" + (f"{org}/" if org else "")
    template = root + "${account}/CloudTrail/${region}/${day}"
    props = {
        "projection.enabled": "true",
        "projection.account.type": "enum",
        "projection.account.values": ",".join(sorted(set(accounts))),
        "projection.region.type": "enum",
        "projection.region.values": ",".join(sorted(set(regions))),
        "projection.day.type": "date",
        "projection.day.format": "yyyy/MM/dd",
        "projection.day.range": f"{since},NOW",
        "projection.day.interval": "1",
        "projection.day.interval.unit": "DAYS",
        "storage.location.template": template,
    }
    tblprops = ",\n".join(f"  '{k}'='{v}'" for k, v in props.items())
    return (
        f"CREATE EXTERNAL TABLE {table} (\n{_COLUMNS_DDL}\n)\n"
        "PARTITIONED BY (account STRING, region STRING, day STRING)\n"
        "ROW FORMAT SERDE 'org.apache.hive.hcatalog.data.JsonSerDe'\n"
        "STORED AS INPUTFORMAT 'com.amazon.emr.cloudtrail.CloudTrailInputFormat'\n"
        "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n"
        f"LOCATION '{root}'\n"
        f"TBLPROPERTIES (\n{tblprops}\n)\n"
    )
