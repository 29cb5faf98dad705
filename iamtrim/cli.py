"""The command line: options → library call → render → exit code. The only place that prints or exits.

Exit codes: 0 ok, 1 findings at or above --fail-on, 2 usage error (bad option, unknown principal),
3 AWS error, 4 bad input or environment (nothing readable; a file missing, unreadable or unwritable;
an unusable store; a disk full; an input too deep or too large to hold). Every error is one line.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer._click import Context, HelpFormatter, Parameter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from iamtrim import graph as usage_graph
from iamtrim.errors import IamtrimError, InputError, NoReadableInput, OptionsError, PrincipalError
from iamtrim.evidence import ingest_access_advisor
from iamtrim.ingest import IngestReport, default_store_path, ingest, load_events
from iamtrim.model import FileReport, Outcome, SkipReason, TimeWindow
from iamtrim.model.profile import ProfileRoles
from iamtrim.query import (
    parse_window,
    principal_usage,
    resolve_principal_name,
    selection_rows,
    summarize_principals,
)
from iamtrim.render import graph as render_graph
from iamtrim.render import policy as render_policy
from iamtrim.render import review_format_names
from iamtrim.render import usage as render_usage
from iamtrim.sources.objects import TrailSource
from iamtrim.store import DEFAULT_WAIT_LOCK, Store
from iamtrim.synth import AdvisedGrant, SynthOptions, Target, advised_grants, generate_identity_policy

if TYPE_CHECKING:
    from iamtrim.aws import Aws
    from iamtrim.synth import GeneratedPolicy


class _Command(TyperCommand):
    """Help that names arguments by their metavar (`PRINCIPAL`, `PATH...`), never by a Python type.

    typer prints `PRINCIPAL <str>` and `{PRINCIPAL}` for arguments; a user reads `PRINCIPAL`.
    """

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar or "[OPTIONS]"]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((_argument_name(param), getattr(param, "help", None) or ""))
            else:
                opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


def _argument_name(param: Parameter) -> str:
    name = param.metavar or (param.name or "").upper()
    return name if param.nargs == 1 else f"{name}..."


def _choices(values: type[StrEnum]) -> str:
    """`[table|json]`: the metavar of a closed choice, as click writes it."""
    return "[" + "|".join(v.value for v in values) + "]"


def _example(*lines: str) -> str:
    """A `--help` epilog: one example, kept as written (click's `\\b` stops the rewrapping)."""
    return "Example:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


app = typer.Typer(
    name="iamtrim",
    help="Least-privilege IAM policies from what AWS principals actually did.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: wrapped at word boundaries, nothing truncated
    pretty_exceptions_show_locals=False,  # never print locals: they may hold credentials
)


class Format(StrEnum):
    table = "table"
    json = "json"


EventsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--events",
        metavar="PATH...",
        help="CloudTrail files or folders, or s3://BUCKET[/PREFIX] trail buckets, to read statelessly "
        "(several after one --events, or repeat it).",
    ),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        readable=False,
        metavar="FILE",
        help="Usage store from `iamtrim ingest` (default: $IAMTRIM_STORE or ./iamtrim-usage.sqlite).",
    ),
]
PrincipalArg = Annotated[
    str,
    typer.Argument(
        metavar="PRINCIPAL", help="Role or user: ARN, session ARN, role/NAME, user/NAME or a unique name."
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", metavar=_choices(Format), help="Output format.")]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="DATE",
        help="Only usage seen on or after DATE: 2026-10-01, 2026-10-01T12:00:00Z, or 90d / 12h back "
        "from now. A stored row counts when its first..last seen overlaps the window.",
    ),
]
UntilOpt = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="DATE",
        help="Only usage seen on or before DATE (a date alone includes that whole UTC day).",
    ),
]

# How to reach AWS (commands that read from the account). Empty: botocore's default chain.
ProfileOpt = Annotated[
    str, typer.Option("--profile", metavar="NAME", help="AWS profile (default: the credential chain).")
]
RegionOpt = Annotated[str, typer.Option("--region", metavar="REGION", help="AWS region for the calls.")]
EndpointOpt = Annotated[
    str,
    typer.Option(
        "--endpoint-url", metavar="URL", help="AWS endpoint URL (a local test server, a VPC endpoint)."
    ),
]
RoleArnOpt = Annotated[
    str, typer.Option("--role-arn", metavar="ARN", help="Assume this role (STS AssumeRole) for every call.")
]


def _aws(profile: str, region: str, endpoint_url: str, role_arn: str) -> Aws:
    """An :class:`iamtrim.aws.Aws` for the options (boto3 is imported only when AWS is used)."""
    from iamtrim.aws import Aws, AwsConfig

    return Aws(AwsConfig(profile=profile, region=region, endpoint_url=endpoint_url, role_arn=role_arn))


def _check_principal_arns(option: str, arns: Sequence[str], example: str) -> None:
    """ARNs a policy names as principals (--break-glass, --admin) must be IAM role or user ARNs:
    anything else would be written into the policy, or refused by AWS when it is applied."""
    from iamtrim.errors import OptionsError
    from iamtrim.model.arn import iam_principal_arn_problem

    for arn in arns:
        problem = iam_principal_arn_problem(arn)
        if problem:
            raise OptionsError(
                f"{option} {arn!r}: {problem}; expected an IAM role or user ARN, "
                f"e.g. arn:aws:iam::111122223333:role/{example}"
            )


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"iamtrim {importlib.metadata.version('iamtrim')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Least-privilege IAM policies from what AWS principals actually did."""


# Control characters (a newline, a terminal escape) in a file name or a value from a record would
# split a one-line message or act on the terminal: they are shown escaped, as Python writes them.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
_SURROGATE = re.compile("[\ud800-\udfff]")


def _one_line(text: str) -> str:
    """*text* on one line: control characters escaped, and an undecodable byte of a file name
    (Python keeps it as a lone surrogate) shown as ``\\xNN``."""
    text = text.translate(_ESCAPES)
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(
            lambda m: (
                f"\\x{ord(m[0]) - 0xDC00:02x}" if 0xDC80 <= ord(m[0]) <= 0xDCFF else f"\\u{ord(m[0]):04x}"
            ),
            text,
        )
    return text


def _err(message: str) -> None:
    typer.echo(f"iamtrim: {_one_line(message)}", err=True)


def _os_message(exc: OSError) -> str:
    """``FILE: reason`` for an operating-system error on a file (permission denied, disk full,
    file exists...)."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename is None:
        return reason
    where = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {reason}"


def _write_file(path: Path, data: bytes) -> None:
    """Write *data* to *path*; a failure (no permission, disk full, a folder in the way) names
    the file, also when the operating system does not (a write that fills the disk)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {(exc.strerror or str(exc)).lower()}") from None


def _write_files(folder: Path, files: list[tuple[str, str]]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = os.fsdecode(exc.filename) if exc.filename is not None else str(folder)
        raise InputError(f"{where}: cannot create the folder: {(exc.strerror or str(exc)).lower()}") from None
    for name, text in files:
        _write_file(folder / name, text.encode("utf-8"))


def _window(since: str | None, until: str | None) -> TimeWindow:
    """The --since/--until window; said on stderr, with what it means for counts."""
    window = parse_window(since, until)
    if not window.is_open:
        _err(
            f"window {window.describe()}: a stored row counts, with all its calls, when its first..last "
            "seen overlaps the window"
        )
    return window


def _open_usage(events: list[str] | None, store: Path | None) -> Store:
    if events and store:
        raise typer.BadParameter("give --events or --store, not both")
    if events:
        # s3:// trails are read with the default credential chain ($AWS_PROFILE, and
        # $AWS_ENDPOINT_URL_S3 for another endpoint: docs/sources.md).
        return load_events(_trail_inputs(events))
    path = store or default_store_path()
    if not path.exists():
        raise InputError(
            f"no usage store at {path}: run `iamtrim ingest PATH --store {path}` or pass --events PATH"
        )
    return Store(path, read_only=True)


# ingest's arguments and options (module-level, like StoreOpt, so the command reads as its steps)
IngestPathsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PATH",
        help="CloudTrail files or folders (recursively), or s3://BUCKET[/PREFIX] trail buckets.",
    ),
]
WorkersOpt = Annotated[
    int | None, typer.Option(metavar="N", help="Worker processes (default: cores, at most 4).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print problems.")]
AccessAdvisorOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--access-advisor",
        readable=False,
        metavar="PATH",
        help="IAM Access Advisor reports (JSON), or a folder of them (repeat the flag for several).",
    ),
]
AdvisorPrincipalOpt = Annotated[
    str,
    typer.Option(
        "--principal",
        metavar="ARN",
        help="ARN the --access-advisor reports were generated for (role, user, group "
        "or policy), when the file does not name it.",
    ),
]
WaitLockOpt = Annotated[
    float,
    typer.Option(
        "--wait-lock",
        metavar="SECONDS",
        min=0,
        help="How long to wait for another ingest writing the same store (then exit 4).",
    ),
]
AdvisorFromAwsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--access-advisor-from-aws",
        metavar="PRINCIPAL",
        help="Run an ACTION_LEVEL Access Advisor job for this role or user (ARN, name, role/NAME "
        "or user/NAME; repeatable) and store its report.",
    ),
]
AllRolesOpt = Annotated[
    bool, typer.Option("--all-roles", help="Access Advisor jobs for every role of the account.")
]
AllUsersOpt = Annotated[
    bool, typer.Option("--all-users", help="Access Advisor jobs for every user of the account.")
]
LookupEventsOpt = Annotated[
    bool,
    typer.Option(
        "--lookup-events",
        help="Read CloudTrail Event history (LookupEvents, 90 days of management events) of "
        "each --region, resuming where the last run stopped.",
    ),
]
AllRegionsOpt = Annotated[
    bool, typer.Option("--all-regions", help="--lookup-events in every region enabled for the account.")
]
LookupSinceOpt = Annotated[
    str,
    typer.Option(
        "--since",
        metavar="DATE",
        help="--lookup-events, s3://: not before this day (2026-10-01) or ISO 8601 time.",
    ),
]
UntilDayOpt = Annotated[
    str,
    typer.Option(
        "--until",
        metavar="DATE",
        help="s3://: the last day whose log folders are read (and the day after it); "
        "--engine athena: the last UTC day (default today).",
    ),
]
AccountsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        metavar="ID",
        help="s3://: only this account's logs (repeatable; default every account in the bucket).",
    ),
]
RegionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--region",
        metavar="REGION",
        help="AWS region (repeatable: --lookup-events regions; s3:// the trail regions read).",
    ),
]


class Engine(StrEnum):
    local = "local"
    spark = "spark"
    athena = "athena"


EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        metavar=_choices(Engine),
        help="Where records are aggregated: this machine, Spark (PATHs, s3://) or Athena (--table); "
        "see docs/scale.md.",
    ),
]
TableOpt = Annotated[
    str, typer.Option("--table", metavar="DB.TABLE", help="--engine athena: the trail's table.")
]
WorkgroupOpt = Annotated[
    str, typer.Option("--workgroup", metavar="NAME", help="--engine athena: the Athena workgroup.")
]
ParquetOpt = Annotated[
    str,
    typer.Option(
        "--parquet",
        metavar="DIR",
        help="--engine spark: also write the store's usage rows as Parquet to DIR (replaced; "
        "schema in docs/scale.md).",
    ),
]


@app.command(
    "ingest",
    cls=_Command,
    epilog=_example("iamtrim ingest AWSLogs/ --store usage.sqlite"),
)
def ingest_cmd(
    paths: IngestPathsArg = None,
    store: StoreOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    access_advisor: AccessAdvisorOpt = None,
    aa_principal: AdvisorPrincipalOpt = "",
    wait_lock: WaitLockOpt = DEFAULT_WAIT_LOCK,
    aa_from_aws: AdvisorFromAwsOpt = None,
    all_roles: AllRolesOpt = False,
    all_users: AllUsersOpt = False,
    lookup_events: LookupEventsOpt = False,
    all_regions: AllRegionsOpt = False,
    since: LookupSinceOpt = "",
    until: UntilDayOpt = "",
    account: AccountsOpt = None,
    profile: ProfileOpt = "",
    region: RegionsOpt = None,
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
    engine: EngineOpt = Engine.local,
    table: TableOpt = "",
    workgroup: WorkgroupOpt = "primary",
    parquet: ParquetOpt = "",
) -> None:
    """Read CloudTrail records into the usage store (incremental: files and events already
    ingested are not counted again), and Access Advisor reports beside them."""
    if engine is not Engine.local:
        aws_opts = (profile, (region or [""])[0], endpoint_url, role_arn)
        if engine is Engine.spark:
            filters = (since, until, account or [], region or [])
            _ingest_spark(paths or [], table, filters, store, quiet, wait_lock, aws_opts, parquet)
            return
        if parquet:
            raise OptionsError("--parquet goes with --engine spark")
        _ingest_engine(engine, paths or [], table, workgroup, since, until, store, quiet, wait_lock, aws_opts)
        return
    if table:
        raise OptionsError("--table goes with --engine athena")
    if parquet:
        raise OptionsError("--parquet goes with --engine spark")
    from_aws = bool(aa_from_aws) or all_roles or all_users
    if not paths and not access_advisor and not from_aws and not lookup_events:
        raise OptionsError(
            "give CloudTrail PATHS, --access-advisor FILE, --access-advisor-from-aws PRINCIPAL, "
            "--lookup-events, or more"
        )
    s3 = any(_is_s3(p) for p in paths or ())
    if all_regions and not lookup_events:
        raise OptionsError("--all-regions goes with --lookup-events")
    if since and not (lookup_events or s3):
        raise OptionsError("--since goes with --lookup-events or an s3:// trail")
    if (until or account) and not s3:
        raise OptionsError("--until and --account go with an s3:// trail (--until also with --engine athena)")
    path = store or default_store_path()
    regions = region or []
    # Trail buckets are configured (and their options checked) before anything is read or made.
    inputs = _trail_inputs(
        paths or [],
        (profile, regions[0] if len(regions) == 1 else "", endpoint_url, role_arn),
        account or [],
        regions,
        _day(since, "--since") if s3 else None,
        _day(until, "--until") if s3 else None,
    )
    if from_aws or lookup_events:
        aws = _aws(profile, regions[0] if len(regions) == 1 else "", endpoint_url, role_arn)
    if from_aws:
        _ingest_access_advisor_from_aws(aws, aa_from_aws or [], all_roles, all_users, path, quiet, wait_lock)
    if lookup_events:
        _ingest_lookup_events(aws, regions, all_regions, _since(since), path, workers, quiet, wait_lock)
    if not paths and not access_advisor:
        return
    if access_advisor:
        _ingest_access_advisor_files(access_advisor, aa_principal, path, quiet, wait_lock)
        if not paths:
            return
    _ingest_trails(inputs, path, workers, quiet, wait_lock)


def _is_s3(text: str) -> bool:
    return text.startswith("s3://")


def _trail_inputs(
    inputs: Sequence[str],
    aws: tuple[str, str, str, str] = ("", "", "", ""),
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
) -> list[str | TrailSource]:
    """Paths as they are; ``s3://`` URIs as trail sources (profile, region, endpoint, role)."""
    if not any(_is_s3(i) for i in inputs):
        return list(inputs)
    from iamtrim.aws import AwsConfig
    from iamtrim.sources.s3 import S3Trail

    profile, region, endpoint_url, role_arn = aws
    config = AwsConfig(profile=profile, region=region, endpoint_url=endpoint_url, role_arn=role_arn)
    return [
        S3Trail(i, config, accounts=accounts, regions=regions, since=since, until=until) if _is_s3(i) else i
        for i in inputs
    ]


def _day(text: str, option: str) -> date | None:
    """A --since/--until for trail folders: the UTC day of a date or an ISO 8601 time."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OptionsError(f"{option} {text!r}: expected YYYY-MM-DD or an ISO 8601 time") from None
    return (when.astimezone(UTC) if when.tzinfo else when).date()


def _ingest_access_advisor_files(
    files: list[Path], principal: str, path: Path, quiet: bool, wait_lock: float
) -> None:
    """Store the Access Advisor reports in *files* (a file that is not one is skipped and said)."""
    with Store(path) as st, st.writer_lock(wait_lock, _err):
        aa_report = ingest_access_advisor(
            files,
            st,
            principal=principal,
            on_file=lambda p, why: _err(f"{p}: skipped: {why}"),
        )
    for note_path, note in aa_report.notes:
        _err(f"{note_path}: {note}")
    if not quiet:
        typer.echo(
            f"access advisor: {aa_report.files_read} reports read, {aa_report.files_already} "
            f"already stored, {len(aa_report.skipped)} skipped; {aa_report.entries} entries "
            f"for {len(aa_report.principals)} principals"
        )


def _ingest_trails(
    inputs: list[str | TrailSource], path: Path, workers: int | None, quiet: bool, wait_lock: float
) -> None:
    """Ingest trail files and objects into the store at *path*, with a progress bar on a TTY."""
    progress = None
    show_bar = sys.stderr.isatty() and not quiet

    told: list[str] = []  # files whose problem was printed as it was met

    def on_file(report: FileReport) -> None:
        if report.error:
            _err(f"{report.path}: {report.error}")
            told.append(report.path)
        if progress is not None:
            progress.advance(task)

    # The store is opened first (a file that is not a store is refused before anything is made
    # beside it), then locked before the progress bar starts (the wait message is a plain line).
    with Store(path) as st, st.writer_lock(wait_lock, _err):
        if show_bar:
            from rich.progress import Progress

            progress = Progress(transient=True)
            progress.start()
            task = progress.add_task("ingesting", total=None)
        try:
            report = ingest(
                inputs,
                st,
                workers=workers,
                on_file=on_file,
                on_start=lambda n: progress.update(task, total=n) if progress else None,
                wait_lock=wait_lock,
            )
        except NoReadableInput:
            if not told:
                raise
            # Every file's problem is already on its own line: nothing read, nothing stored.
            raise typer.Exit(NoReadableInput.exit_code) from None
        finally:
            if progress is not None:
                progress.stop()
    if not quiet:
        _print_ingest(report, path)


def _ingest_engine(
    engine: Engine,
    paths: list[str],
    table: str,
    workgroup: str,
    since: str,
    until: str,
    store: Path | None,
    quiet: bool,
    wait_lock: float,
    aws_opts: tuple[str, str, str, str],
) -> None:
    """ingest --engine athena: Athena reduces, iamtrim normalizes and stores."""
    path = store or default_store_path()
    if engine is Engine.athena:
        from iamtrim.engines.athena import athena_window, ingest_athena

        if paths or not table:
            raise OptionsError(
                "--engine athena reads --table DB.TABLE (made by `iamtrim athena ddl`), not PATHs"
            )
        window = athena_window(since, until)
        with Store(path) as st, st.writer_lock(wait_lock, _err):
            report, run = ingest_athena(_aws(*aws_opts), st, table, workgroup, window)
        if run is None or report is None:
            _err(f"athena: {table} {window.since}..{window.until} is already in {path}; nothing queried")
            return
        typer.echo(run.describe())  # the cost of every run, always
        if not quiet:
            _print_ingest(report, path)


def _ingest_spark(
    paths: list[str],
    table: str,
    filters: tuple[str, str, list[str], list[str]],
    store: Path | None,
    quiet: bool,
    wait_lock: float,
    aws_opts: tuple[str, str, str, str],
    parquet: str = "",
) -> None:
    """ingest --engine spark PATH|s3://...: Spark reduces, iamtrim normalizes and stores (and
    writes the store's usage rows to *parquet*). *filters* are the s3:// trail's --since,
    --until, --account and --region."""
    since, until, accounts, regions = filters
    s3 = any(_is_s3(p) for p in paths)
    if not paths or table:
        raise OptionsError("--engine spark reads trail PATHs or s3:// URIs; --table is for athena")
    if (since or until or accounts) and not s3:
        raise OptionsError("--since, --until and --account go with an s3:// trail")
    profile, _, endpoint_url, role_arn = aws_opts
    inputs = _trail_inputs(
        paths,
        (profile, regions[0] if len(regions) == 1 else "", endpoint_url, role_arn),
        accounts,
        regions,
        _day(since, "--since") if s3 else None,
        _day(until, "--until") if s3 else None,
    )
    from iamtrim.engines.spark import ingest_spark, write_parquet

    with Store(store or default_store_path()) as st, st.writer_lock(wait_lock, _err):
        report, stats = ingest_spark(inputs, st)
        written = write_parquet(st, parquet) if parquet else 0
    for problem_path, problem in report.files_failed:  # one line per file, as ingest prints them
        _err(f"{problem_path}: {problem}")
    if not quiet:
        typer.echo(stats.describe())
        _print_ingest(report, store or default_store_path())
        if parquet:
            typer.echo(f"parquet: {written:,} usage rows written to {_one_line(parquet)}")


def _since(text: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OptionsError(f"--since {text!r}: expected YYYY-MM-DD or an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ingest_lookup_events(
    aws: Aws,
    regions: list[str],
    all_regions: bool,
    since: datetime | None,
    path: Path,
    workers: int | None,
    quiet: bool,
    wait_lock: float,
) -> None:
    """Fetch every region's events into spool files, then ingest them and move the cursors: an
    AWS failure leaves the store as it was."""
    import tempfile

    from iamtrim.sources.lookup_events_aws import account_of, fetch_region, regions_for, window

    account = account_of(aws)
    chosen = regions_for(aws, regions, all_regions)
    cursors: dict[str, str] = {}
    if path.exists():
        # Opened as for the ingest that follows (a store file not yet written is a fresh store,
        # which read-only opening refuses), and refused here, before any call, if it is not a store.
        with Store(path) as st:
            cursors = {r: st.lookup_cursor(account, r) for r in chosen}
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="iamtrim-lookup-") as tmp:
        fetched = []
        for r in chosen:
            start = window(since, cursors.get(r, ""), now)
            f = fetch_region(aws, r, start, now, Path(tmp))
            fetched.append(f)
            if not quiet:
                typer.echo(
                    f"lookup events: {account} {r}: {f.events} events in {f.pages} pages "
                    f"since {start:%Y-%m-%dT%H:%M:%SZ}"
                )
        with Store(path) as st, st.writer_lock(wait_lock, _err):
            files = [str(f.path) for f in fetched if f.events]
            if files:
                report = ingest(files, st, workers=workers, wait_lock=wait_lock)
                if not quiet:
                    _print_ingest(report, path)
            for f in fetched:
                if f.newest:
                    st.set_lookup_cursor(account, f.region, f.newest)


def _ingest_access_advisor_from_aws(
    aws: Aws, names: list[str], all_roles: bool, all_users: bool, path: Path, quiet: bool, wait_lock: float
) -> None:
    """Run the jobs, wait for all of them, then store the reports (nothing is stored on failure)."""
    from iamtrim.evidence import ingest_access_advisor_responses
    from iamtrim.sources.access_advisor_aws import fetch_reports, list_principals, resolve_principals

    principals = sorted(
        set(resolve_principals(aws, names)) | set(list_principals(aws, roles=all_roles, users=all_users))
    )
    if not principals:
        raise PrincipalError("access advisor: the account has no such principals; nothing to fetch")
    show = sys.stderr.isatty() and not quiet
    reports = fetch_reports(
        aws,
        principals,
        on_report=(lambda arn: typer.echo(f"access advisor: {arn} done", err=True)) if show else None,
    )
    with Store(path) as st, st.writer_lock(wait_lock, _err):
        report = ingest_access_advisor_responses(
            [(f"aws:iam:{r.principal}#job/{r.job_id}", r.principal, r.body) for r in reports],
            st,
            on_file=lambda p, why: _err(f"{p}: skipped: {why}"),
        )
    for note_path, note in report.notes:
        _err(f"{note_path}: {note}")
    if not quiet:
        typer.echo(
            f"access advisor (from AWS): {len(reports)} jobs, {report.files_read} reports stored, "
            f"{report.files_already} already stored, {len(report.skipped)} skipped; {report.entries} entries "
            f"for {len(report.principals)} principals"
        )


def _print_ingest(report: IngestReport, path: Path) -> None:
    typer.echo(f"store: {_one_line(str(path))}")
    typer.echo(
        f"files: {report.files_read} read, {report.files_already} already ingested, "
        f"{len(report.files_failed)} with problems"
    )
    typer.echo(
        f"records: {report.records} in {report.seconds:.2f}s "
        f"({report.records_per_second:,.0f}/s); usage keys: {report.usage_keys}; "
        f"principals: {report.principals}"
    )
    # resource-unknown counts actions that *were* stored as usage (and are granted on the action's
    # ARN format): a note about kept usage, never a skip.
    unknown = report.skips.get(SkipReason.RESOURCE_UNKNOWN.value, 0)
    skipped = {k: v for k, v in report.skips.items() if k != SkipReason.RESOURCE_UNKNOWN.value and v}
    if skipped:
        typer.echo("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    if unknown:
        typer.echo(
            f"note: resource-unknown {unknown} (actions stored as usage whose records name no "
            "resource; generate-policy grants them on the action's ARN format)"
        )


@app.command(
    "principals",
    cls=_Command,
    epilog=_example("iamtrim principals --store usage.sqlite"),
)
def principals_cmd(
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: FormatOpt = Format.table,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """List the principals seen, with how much they used and were denied."""
    window = _window(since, until)
    with _open_usage(events, store) as st:
        summaries = summarize_principals(st, window)
    if fmt is Format.json:
        typer.echo(render_usage.principals_json(summaries))
    else:
        typer.echo(render_usage.principals_table(summaries))


@app.command(
    "usage",
    cls=_Command,
    epilog=_example("iamtrim usage ml-training-job --store usage.sqlite --format json"),
)
def usage_cmd(
    principal: PrincipalArg,
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: FormatOpt = Format.table,
    since: SinceOpt = None,
    until: UntilOpt = None,
    brief: Annotated[
        bool,
        typer.Option(
            "--brief", help="Table: one row per resource family (S3 folder, log group), with counts."
        ),
    ] = False,
) -> None:
    """What one principal really used (and was denied), with counts, times and context."""
    window = _window(since, until)
    with _open_usage(events, store) as st:
        p = resolve_principal_name(st, principal)
        usage = principal_usage(st, p, window)
    if fmt is Format.json:
        typer.echo(render_usage.usage_json(usage))
    else:
        typer.echo(render_usage.usage_table(usage, brief=brief))


class EvidenceSource(StrEnum):
    all = "all"
    cloudtrail = "cloudtrail"


class PolicyFormat(StrEnum):
    json = "json"
    policy = "policy"
    terraform = "terraform"
    cloudformation = "cloudformation"


# generate-policy's options
PolicyFormatOpt = Annotated[
    PolicyFormat, typer.Option("--format", metavar=_choices(PolicyFormat), help="Output format.")
]
PolicyOutDirOpt = Annotated[
    Path | None,
    typer.Option("--out-dir", readable=False, metavar="DIR", help="Write one file per policy here."),
]
PolicyExplainOpt = Annotated[bool, typer.Option("--explain", help="Show the evidence behind each statement.")]
NoConditionsOpt = Annotated[
    bool, typer.Option("--no-conditions", help="Omit aws:SourceVpce / kms:ViaService.")
]
TargetOpt = Annotated[Target, typer.Option("--target", metavar=_choices(Target), help="Size limits to meet.")]
PrefixThresholdOpt = Annotated[
    int,
    typer.Option(
        "--prefix-threshold",
        min=1,
        metavar="N",
        help="Distinct keys (or resources) above which a folder becomes prefix/*.",
    ),
]
EvidenceOpt = Annotated[
    EvidenceSource,
    typer.Option(
        "--evidence",
        metavar=_choices(EvidenceSource),
        help="all: also keep actions Access Advisor shows used (ingested with --access-advisor); "
        "cloudtrail: CloudTrail only.",
    ),
]
MaxPoliciesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-policies",
        min=1,
        metavar="N",
        max=20,
        help="Managed policies the result may take (1-20; default 1, or 10 with --no-widen). "
        "More policies, fewer widenings.",
    ),
]
NoWidenOpt = Annotated[
    bool,
    typer.Option(
        "--no-widen",
        help="Never widen to fit the size limits: split into policies, refuse past the limit.",
    ),
]
PolicyAuthzOpt = Annotated[
    Path | None,
    typer.Option(
        "--authz",
        readable=False,
        metavar="FILE",
        help="`aws iam get-account-authorization-details` output: which role each instance profile "
        "holds (iam:PassRole through an instance profile).",
    ),
]
PolicyFromAwsOpt = Annotated[
    bool,
    typer.Option(
        "--from-aws",
        help="Read which role each instance profile holds from the account "
        "(iam:GetAccountAuthorizationDetails), instead of --authz.",
    ),
]
PolicyBriefOpt = Annotated[
    bool,
    typer.Option(
        "--brief",
        help="Print one line per statement (actions, resources, calls) instead of the document.",
    ),
]


@app.command(
    "generate-policy",
    cls=_Command,
    epilog=_example("iamtrim generate-policy ml-training-job --store usage.sqlite --explain"),
)
def generate_policy_cmd(
    principal: PrincipalArg,
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: PolicyFormatOpt = PolicyFormat.json,
    out_dir: PolicyOutDirOpt = None,
    explain: PolicyExplainOpt = False,
    no_conditions: NoConditionsOpt = False,
    target: TargetOpt = Target.MANAGED,
    prefix_threshold: PrefixThresholdOpt = 10,
    evidence_source: EvidenceOpt = EvidenceSource.all,
    max_policies: MaxPoliciesOpt = None,
    no_widen: NoWidenOpt = False,
    since: SinceOpt = None,
    until: UntilOpt = None,
    brief: PolicyBriefOpt = False,
    authz: PolicyAuthzOpt = None,
    from_aws: PolicyFromAwsOpt = False,
    profile: ProfileOpt = "",
    region: RegionOpt = "",
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
) -> None:
    """The smallest identity policy that still allows everything PRINCIPAL was seen doing."""
    if out_dir is not None and fmt is not PolicyFormat.policy:
        raise OptionsError("generate-policy: --out-dir writes policy documents; use it with --format policy")
    if authz is not None and from_aws:
        raise OptionsError("generate-policy: give --authz FILE or --from-aws, not both")
    window = _window(since, until)
    current = _instance_profiles(authz, from_aws, profile, region, endpoint_url, role_arn)
    with _open_usage(events, store) as st:
        p = resolve_principal_name(st, principal)
        rows = st.usage(p.arn, window)
        advised: list[AdvisedGrant] = []
        if evidence_source is EvidenceSource.all:
            from iamtrim import evidence

            advised = advised_grants(evidence.for_principal(st, p.arn, window=window, rows=rows))
        if not window.is_open and not advised and all(r.outcome is not Outcome.USED for r in rows):
            raise PrincipalError(
                f"{p.arn} made no authorized call between {window.describe()} ({len(rows)} denied "
                "rows); nothing to grant"
            )
        generated = generate_identity_policy(
            p,
            rows,
            SynthOptions(
                conditions=not no_conditions,
                prefix_threshold=prefix_threshold,
                target=target,
                max_policies=max_policies,
                widen=not no_widen,
            ),
            advised,
            ProfileRoles(st.profile_changes(), *current),
        )
    _print_policy(generated, fmt, out_dir, explain, target, brief)


def _instance_profiles(
    authz: Path | None, from_aws: bool, profile: str, region: str, endpoint_url: str, role_arn: str
) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...], str]:
    """Which role each instance profile holds now, per IAM authorization details (none given: ())."""
    from iamtrim.review.current import instance_profiles_of, read_authz

    if authz is not None:
        return instance_profiles_of(read_authz(authz)), f"IAM authorization details ({authz.name})"
    if from_aws:
        from iamtrim.sources.aws_policies import authorization_details

        details = authorization_details(_aws(profile, region, endpoint_url, role_arn))
        return instance_profiles_of(details), "IAM authorization details (iam:GetAccountAuthorizationDetails)"
    return (), ""


def _print_policy(
    generated: GeneratedPolicy,
    fmt: PolicyFormat,
    out_dir: Path | None,
    explain: bool,
    target: Target,
    brief: bool,
) -> None:
    """generate-policy's output: the document(s) in *fmt*, files under *out_dir*, --explain on stderr."""
    if out_dir is not None:
        _write_files(
            out_dir, [(f"{name}.json", text) for name, text in render_policy.policy_documents(generated)]
        )
    if brief:
        typer.echo(render_policy.summary_text(generated))
    elif fmt is PolicyFormat.json:
        typer.echo(render_policy.to_json(generated, explain=explain))
    elif fmt is PolicyFormat.policy:
        if out_dir is None:
            typer.echo(render_policy.to_policy(generated))
        else:
            written = [
                _one_line(str(out_dir / f"{n}.json")) for n, _ in render_policy.policy_documents(generated)
            ]
            typer.echo("\n".join(written))
    elif fmt is PolicyFormat.terraform:
        typer.echo(render_policy.to_terraform(generated, target))
    else:
        typer.echo(render_policy.to_cloudformation(generated, target))
    if explain and fmt is not PolicyFormat.json:
        typer.echo(render_policy.explain_text(generated), err=True)


# -- the usage graph: who-used, graph export, graph render ------------------------------------


def _graph_of(
    st: Store, principals: list[str] | None, resources: list[str] | None, window: TimeWindow
) -> object:
    arns = [resolve_principal_name(st, p).arn for p in principals or []]
    for r in resources or []:
        _check_resource_pattern(r)
    g = usage_graph.build_selected_graph(
        st.principals(),
        selection_rows(st, arns, resources or [], window),
        only_principals=arns,
        only_resources=resources or [],
    )
    if usage_graph.is_empty(g):
        raise PrincipalError(
            "no usage matches "
            + (
                " and ".join(
                    filter(
                        None,
                        [
                            "principal " + ", ".join(arns) if arns else "",
                            "resource " + ", ".join(resources or []) if resources else "",
                        ],
                    )
                )
                or "(the usage data is empty)"
            )
            + ("" if window.is_open else f" between {window.describe()}")
        )
    return g


def _check_resource_pattern(pattern: str) -> None:
    if not (pattern.startswith("arn:") or pattern == "*"):
        raise OptionsError(
            f"{pattern!r} is not an ARN or ARN pattern (e.g. arn:aws:s3:::acme-ml-*, "
            "arn:aws:kms:us-east-1:111122223333:key/*)"
        )


@app.command(
    "who-used",
    cls=_Command,
    epilog=_example("iamtrim who-used 'arn:aws:s3:::acme-ml-*' --store usage.sqlite"),
)
def who_used_cmd(
    resource: Annotated[
        str,
        typer.Argument(
            metavar="RESOURCE",
            help="Resource ARN or pattern (* and ?; ${*} and ${?} for a literal * or ?), e.g. "
            "'arn:aws:s3:::acme-ml-*' or a KMS key ARN. "
            "A bucket ARN covers its objects.",
        ),
    ],
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: FormatOpt = Format.table,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Every principal that used RESOURCE: actions, calls, last seen, VPC endpoints, and direct use
    apart from use through S3 or another service (for KMS keys)."""
    _check_resource_pattern(resource)
    window = _window(since, until)
    with _open_usage(events, store) as st:
        g = usage_graph.build_selected_graph(
            st.principals(), selection_rows(st, [], [resource], window), only_resources=[resource]
        )
    uses = usage_graph.who_used(g, resource)
    summary = usage_graph.summarize_uses(uses)
    if fmt is Format.json:
        typer.echo(render_graph.who_used_json(resource, uses, summary))
    else:
        typer.echo(render_graph.who_used_table(resource, uses, summary))


athena_app = typer.Typer(
    help="Amazon Athena: the CloudTrail table the reduction reads (docs/scale.md).",
    no_args_is_help=True,
    epilog=_example("iamtrim athena ddl s3://trail-bucket/AWSLogs/111122223333/"),
)
app.add_typer(athena_app, name="athena")


@athena_app.command(
    "ddl",
    cls=_Command,
    epilog=_example("iamtrim athena ddl s3://trail-bucket/AWSLogs/111122223333/"),
)
def athena_ddl_cmd(
    location: Annotated[
        str,
        typer.Argument(
            metavar="S3-URL", help="The trail's s3://BUCKET/[PREFIX/]AWSLogs/[o-ORGID/|ACCOUNT/]."
        ),
    ],
    table: Annotated[str, typer.Option("--table", metavar="DB.TABLE", help="Table to create.")] = (
        "cloudtrail_logs"
    ),
    accounts: Annotated[
        str, typer.Option("--accounts", metavar="ID,...", help="Accounts an organization trail holds.")
    ] = "",
    regions: Annotated[
        str,
        typer.Option("--regions", metavar="R,...", help="Regions to project (default: all commercial ones)."),
    ] = "",
    start: Annotated[
        str, typer.Option("--start", metavar="YYYY/MM/DD", help="First day the projection covers.")
    ] = "2013/11/01",
) -> None:
    """Print CREATE TABLE for the trail, partitioned by account, region and day with partition
    projection, for `ingest --engine athena --table`."""
    from iamtrim.engines.sql import DEFAULT_REGIONS, table_ddl

    def split(text: str) -> list[str]:
        return [v.strip() for v in text.split(",") if v.strip()]

    typer.echo(
        table_ddl(
            location, table, accounts=split(accounts), regions=split(regions) or DEFAULT_REGIONS, since=start
        ),
        nl=False,
    )


graph_app = typer.Typer(
    help="The usage graph: export it (GraphML, JSON, DOT) or draw it (SVG, PNG).",
    no_args_is_help=True,
    epilog=_example("iamtrim graph export --store usage.sqlite --format json --out usage.json"),
)
app.add_typer(graph_app, name="graph")


class GraphFormat(StrEnum):
    graphml = "graphml"
    json = "json"
    dot = "dot"


PrincipalSel = Annotated[
    list[str] | None,
    typer.Option(
        "--principal",
        metavar="PRINCIPAL",
        help="Only these principals (ARN, session ARN, role/NAME or a unique name; several or repeated).",
    ),
]
ResourceSel = Annotated[
    list[str] | None,
    typer.Option(
        "--resource",
        metavar="ARN",
        help="Only resources matching these ARNs or patterns (several or repeated).",
    ),
]


@graph_app.command(
    "export",
    cls=_Command,
    epilog=_example("iamtrim graph export --store usage.sqlite --format dot --out usage.dot"),
)
def graph_export_cmd(
    events: EventsOpt = None,
    store: StoreOpt = None,
    principal: PrincipalSel = None,
    resource: ResourceSel = None,
    fmt: Annotated[
        GraphFormat,
        typer.Option(
            "--format", metavar=_choices(GraphFormat), help="graphml (Gephi, yEd), json (node-link), dot."
        ),
    ] = GraphFormat.graphml,
    out: Annotated[
        Path | None,
        typer.Option("--out", readable=False, metavar="FILE", help="Write here instead of standard output."),
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Export the usage graph (principal → action → resource) with counts, times and context."""
    window = _window(since, until)
    with _open_usage(events, store) as st:
        g = _graph_of(st, principal, resource, window)
    writer = {
        GraphFormat.graphml: usage_graph.to_graphml,
        GraphFormat.json: usage_graph.to_node_link_json,
        GraphFormat.dot: usage_graph.to_dot,
    }[fmt]
    text = writer(g)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        _write_file(out, text.encode("utf-8"))


@graph_app.command(
    "render",
    cls=_Command,
    epilog=_example(
        "iamtrim graph render --store usage.sqlite \\",
        "    --principal ml-notebook-execution --out notebook.svg",
    ),
)
def graph_render_cmd(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            readable=False,
            metavar="FILE",
            help="FILE.svg, or FILE.png when the resvg-py package is installed.",
        ),
    ],
    events: EventsOpt = None,
    store: StoreOpt = None,
    principal: PrincipalSel = None,
    resource: ResourceSel = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            min=1,
            metavar="N",
            help="Principals (and twice as many actions and resource groups) drawn before '+K more'.",
        ),
    ] = 12,
    title: Annotated[str | None, typer.Option("--title", metavar="TEXT", help="Picture title.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Draw a principal's or a bucket's neighbourhood: principals | actions by service | resources by
    bucket or prefix, with VPC endpoints, KMS keys and calling services marked on the edges."""
    suffix = out.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise OptionsError(f"--out {out}: the picture is written as .svg or .png")
    if suffix == ".png" and not render_graph.png_available():
        raise OptionsError(render_graph.PNG_HINT)
    window = _window(since, until)
    with _open_usage(events, store) as st:
        g = _graph_of(st, principal, resource, window)
    label = title or " + ".join([*(principal or []), *(resource or [])]) or "usage graph"
    svg = render_graph.to_svg(usage_graph.picture(g, title=label, top=top))
    _write_file(out, render_graph.to_png(svg) if suffix == ".png" else svg.encode("utf-8"))
    typer.echo(_one_line(str(out)))


class ResourcePolicyFormat(StrEnum):
    json = "json"
    policy = "policy"


@app.command(
    "bucket-policy",
    cls=_Command,
    epilog=_example(
        "iamtrim bucket-policy acme-ml-datasets --store usage.sqlite \\",
        "    --break-glass arn:aws:iam::444455556666:role/break-glass-admin",
    ),
)
def bucket_policy_cmd(
    bucket: Annotated[str, typer.Argument(metavar="BUCKET", help="Bucket name.")],
    events: EventsOpt = None,
    store: StoreOpt = None,
    break_glass: Annotated[
        list[str] | None,
        typer.Option(
            "--break-glass",
            metavar="ARN",
            help="Principal ARNs that must never be locked out of the bucket policy (several or repeated).",
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account", metavar="ID", help="The bucket owner's account (default: inferred from the callers)."
        ),
    ] = None,
    fmt: Annotated[
        ResourcePolicyFormat,
        typer.Option("--format", metavar=_choices(ResourcePolicyFormat), help="Output format."),
    ] = (ResourcePolicyFormat.json),
    explain: Annotated[bool, typer.Option("--explain", help="Show the evidence for each pin and grant.")] = (
        False
    ),
    from_aws: Annotated[
        bool,
        typer.Option(
            "--from-aws",
            help="Read the bucket's current policy (s3:GetBucketPolicy) and keep the statements "
            "iamtrim does not manage.",
        ),
    ] = False,
    profile: ProfileOpt = "",
    region: RegionOpt = "",
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """An S3 bucket policy from observed use: HTTPS only, VPC-endpoint and SSE-KMS pins, cross-account
    grants. Refused if it would lock the account root, or a principal named by --break-glass, out of
    the bucket policy."""
    from iamtrim.render import bucket as render_bucket
    from iamtrim.synth.bucket import BucketOptions, generate_bucket_policy

    _check_principal_arns("--break-glass", break_glass or (), "break-glass")
    window = _window(since, until)
    current = None
    if from_aws:
        from iamtrim.sources.aws_policies import bucket_policy
        from iamtrim.synth.merge import CurrentResourcePolicy

        aws = _aws(profile, region, endpoint_url, role_arn)
        current = CurrentResourcePolicy(bucket_policy(aws, bucket), f"s3:GetBucketPolicy {bucket}")
    with _open_usage(events, store) as st:
        generated = generate_bucket_policy(
            bucket,
            st.usage(window=window),
            BucketOptions(break_glass=tuple(break_glass or ()), account=account or ""),
            current,
        )
    if fmt is ResourcePolicyFormat.json:
        typer.echo(render_bucket.bucket_json(generated, explain=explain))
    else:
        typer.echo(render_bucket.bucket_policy_text(generated))
    if explain and fmt is not ResourcePolicyFormat.json:
        typer.echo(render_bucket.bucket_explain_text(generated), err=True)


@app.command(
    "kms-policy",
    cls=_Command,
    epilog=_example("iamtrim kms-policy 9f8e7d6c-5b4a-3928-1716-0f1e2d3c4b5a --store usage.sqlite"),
)
def kms_policy_cmd(
    key: Annotated[
        str, typer.Argument(metavar="KEY", help="KMS key ARN, or a key id seen in the usage data.")
    ],
    events: EventsOpt = None,
    store: StoreOpt = None,
    admin: Annotated[
        list[str] | None,
        typer.Option(
            "--admin",
            metavar="ARN",
            help="Key administrator ARNs, named in the policy (several or repeated).",
        ),
    ] = None,
    fmt: Annotated[
        ResourcePolicyFormat,
        typer.Option("--format", metavar=_choices(ResourcePolicyFormat), help="Output format."),
    ] = (ResourcePolicyFormat.json),
    explain: Annotated[bool, typer.Option("--explain", help="Show the evidence for each statement.")] = False,
    from_aws: Annotated[
        bool,
        typer.Option(
            "--from-aws",
            help="Read the key's current policy (kms:GetKeyPolicy) and keep the statements iamtrim "
            "does not manage.",
        ),
    ] = False,
    profile: ProfileOpt = "",
    region: RegionOpt = "",
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Key-policy statements for the observed users of a KMS key, with kms:ViaService where they used it
    only through a service; key administration stays with the account's IAM policies."""
    from iamtrim.render import bucket as render_bucket
    from iamtrim.synth.kms import generate_key_policy, resolve_key

    _check_principal_arns("--admin", admin or (), "key-admin")
    window = _window(since, until)
    with _open_usage(events, store) as st:
        rows = st.usage(window=window)
        key_arn = resolve_key(rows, key)
        current = None
        if from_aws:
            from iamtrim.sources.aws_policies import key_policy
            from iamtrim.synth.merge import CurrentResourcePolicy

            aws = _aws(profile, region, endpoint_url, role_arn)
            _, policy = key_policy(aws, key_arn)
            current = CurrentResourcePolicy(policy, f"kms:GetKeyPolicy {key_arn}")
        generated = generate_key_policy(key_arn, rows, tuple(admin or ()), current)
    if fmt is ResourcePolicyFormat.json:
        typer.echo(render_bucket.key_json(generated, explain=explain))
    else:
        typer.echo(render_bucket.key_policy_text(generated))
    if explain and fmt is not ResourcePolicyFormat.json:
        typer.echo(render_bucket.key_explain_text(generated), err=True)


class DiffFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


class DiffFailOn(StrEnum):
    unused = "unused"
    risky = "risky"
    missing = "missing"


# diff's options
DiffAuthzOpt = Annotated[
    Path | None,
    typer.Option(
        "--authz",
        readable=False,
        metavar="FILE",
        help="`aws iam get-account-authorization-details` output holding the principal.",
    ),
]
CurrentOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--current",
        readable=False,
        metavar="FILE...",
        help="Current identity policy documents (several or repeated), instead of --authz.",
    ),
]
BoundaryOpt = Annotated[
    Path | None,
    typer.Option(
        "--boundary",
        readable=False,
        metavar="FILE",
        help="Permissions boundary document (with --current).",
    ),
]
DiffFormatOpt = Annotated[
    DiffFormat, typer.Option("--format", metavar=_choices(DiffFormat), help="Output format.")
]
DiffFailOnOpt = Annotated[
    DiffFailOn | None,
    typer.Option(
        "--fail-on",
        metavar=_choices(DiffFailOn),
        help="Exit 1 when there are unused entries safe to remove (observable and not used), "
        "such entries with a risk class, or missing entries.",
    ),
]
DiffFromAwsOpt = Annotated[
    bool,
    typer.Option(
        "--from-aws",
        help="Read the principal's current policies from the account "
        "(iam:GetAccountAuthorizationDetails), instead of --authz.",
    ),
]
DiffBriefOpt = Annotated[
    bool,
    typer.Option("--brief", help="Text: the headline and the unused risky actions only."),
]


@app.command(
    "diff",
    cls=_Command,
    epilog=_example(
        "iamtrim diff ml-training-job --store usage.sqlite \\",
        "    --authz account-authorization-details.json",
    ),
)
def diff_cmd(
    principal: PrincipalArg,
    events: EventsOpt = None,
    store: StoreOpt = None,
    authz: DiffAuthzOpt = None,
    current: CurrentOpt = None,
    boundary: BoundaryOpt = None,
    fmt: DiffFormatOpt = DiffFormat.text,
    fail_on: DiffFailOnOpt = None,
    from_aws: DiffFromAwsOpt = False,
    profile: ProfileOpt = "",
    region: RegionOpt = "",
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
    since: SinceOpt = None,
    until: UntilOpt = None,
    brief: DiffBriefOpt = False,
) -> None:
    """What PRINCIPAL's current policies grant that it never used, and what it needed but lacked."""
    from iamtrim.errors import OptionsError
    from iamtrim.render import diff as render_diff
    from iamtrim.review.current import CurrentPolicies, current_from_authz, current_from_files
    from iamtrim.review.diff import diff_stored_principal

    if sum((authz is not None, bool(current), from_aws)) != 1:
        raise OptionsError("diff: give --authz FILE, --current FILE... or --from-aws, one of them")
    if boundary is not None and not current:
        raise OptionsError(
            "diff: --boundary goes with --current (--authz and --from-aws name the boundary themselves)"
        )

    def policies_of(who: str) -> CurrentPolicies:
        if from_aws:
            from iamtrim.review.current import current_from_aws

            return current_from_aws(_aws(profile, region, endpoint_url, role_arn), who)
        if authz is not None:
            return current_from_authz(authz, who)
        return current_from_files(current or [], boundary, who)

    window = _window(since, until)
    with _open_usage(events, store) as st:
        result = diff_stored_principal(
            st, principal, window, policies_of, policies_name_principal=not current
        )
    if fmt is DiffFormat.json:
        typer.echo(render_diff.to_json(result))
    elif fmt is DiffFormat.markdown:
        typer.echo(render_diff.to_markdown(result), nl=False)
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        typer.echo(render_diff.to_text(result, colour=colour, brief=brief))
    failing = {
        DiffFailOn.unused: bool(result.removable),  # never the unobservable ones
        DiffFailOn.risky: bool(result.risky_removable),
        DiffFailOn.missing: bool(result.missing),
    }
    if fail_on is not None and failing[fail_on]:
        from iamtrim.errors import FailOnFindings

        raise FailOnFindings(f"diff: {fail_on} entries present (--fail-on {fail_on})")


def _is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1


def expand_multi_value(args: Sequence[str], root: object) -> list[str]:
    """Let a repeatable option take several values after one flag, as the docs write it:
    ``--events A B C`` → ``--events=A --events=B --events=C`` (click gives an option one value).

    The values run to the next option or ``--``. When the command's arguments would then be
    missing (``generate-policy --events a.json b.json ml-training-job``), the run gives its last
    values back to them, keeping at least one. Commands with a variadic argument (``ingest
    PATH...``) are left alone: there a value cannot be told from an argument; repeat the flag.
    """
    out = list(args)
    cmd = root
    i = 0
    while isinstance(cmd, TyperGroup) and i < len(out):
        if _is_option(out[i]):  # the root's own options are flags (--help)
            i += 1
            continue
        sub = cmd.commands.get(out[i])
        if sub is None:
            return out
        cmd, i = sub, i + 1
    if not isinstance(cmd, TyperCommand):
        return out
    return out[:i] + _expand_for(cmd, out[i:])


def _expand_for(cmd: TyperCommand, tokens: list[str]) -> list[str]:
    options = [p for p in cmd.params if isinstance(p, TyperOption)]
    arguments = [p for p in cmd.params if isinstance(p, TyperArgument)]
    multi = {o for p in options if p.multiple and not p.is_flag for o in p.opts}
    if not multi or any(a.nargs < 0 for a in arguments):
        return tokens
    valued = {o for p in options if not p.is_flag and not p.count for o in p.opts}
    # Items: a plain token, or [option, values] for a run of values after a multi-value option.
    items: list[str | tuple[str, list[str]]] = []
    positional = 0
    j = 0
    while j < len(tokens):
        token = tokens[j]
        if token == "--":
            items.extend(tokens[j:])
            positional += len(tokens) - j - 1
            break
        name, eq, attached = token.partition("=")
        if _is_option(token) and (token in multi or (eq and name in multi)):
            values = [attached] if eq else []
            j += 1
            while j < len(tokens) and not _is_option(tokens[j]) and tokens[j] != "--":
                values.append(tokens[j])
                j += 1
            items.append((name, values) if values else token)
            continue
        items.append(token)
        if _is_option(token):
            if token in valued and j + 1 < len(tokens):
                items.append(tokens[j + 1])
                j += 1
        else:
            positional += 1
        j += 1
    missing = sum(a.nargs for a in arguments if a.required) - positional
    out: list[str] = []
    for item in reversed(items):  # the last runs give values back first
        if isinstance(item, str):
            out.append(item)
            continue
        name, values = item
        back = max(0, min(missing, len(values) - 1))
        missing -= back
        kept, given = values[: len(values) - back], values[len(values) - back :]
        out.extend(reversed(given))
        out.extend(reversed([f"{name}={v}" for v in kept]))
    return list(reversed(out))


# The review's formats are its render modules (iamtrim/render/review_<name>.py): a new one is one
# module, offered here by name.
_REVIEW_FORMATS = review_format_names()


def _review_format(value: str) -> str:
    if value not in _REVIEW_FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(_REVIEW_FORMATS)}")
    return value


class ReviewFailOn(StrEnum):
    new = "new"
    new_risky = "new-risky"
    risky = "risky"
    missing = "missing"


_DEFAULT_SUPPRESSIONS = (
    ".iamtrim-suppressions.yaml",
    ".iamtrim-suppressions.yml",
    ".iamtrim-suppressions.json",
)

ReviewAuthzOpt = Annotated[
    Path | None,
    typer.Option(
        "--authz",
        metavar="FILE",
        help="`aws iam get-account-authorization-details` output: the current policies.",
    ),
]
ReviewFromAwsOpt = Annotated[
    bool,
    typer.Option(
        "--from-aws", help="Read the current policies from the account (iam:GetAccountAuthorizationDetails)."
    ),
]
ReviewAccountsOpt = Annotated[
    Path | None,
    typer.Option(
        "--accounts",
        metavar="FILE",
        help="Review several accounts: their ids and the role to assume in each (YAML or JSON).",
    ),
]
ReviewPrincipalOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--principal", metavar="PRINCIPAL", help="Review only this principal (ARN or name; repeatable)."
    ),
]
IdleDaysOpt = Annotated[
    int, typer.Option("--idle-days", min=1, metavar="N", help="Idle: no authorized call for this many days.")
]
MinAgeDaysOpt = Annotated[
    int,
    typer.Option(
        "--min-age-days",
        min=0,
        metavar="N",
        help="Leave out principals created fewer days than this before the evidence ends.",
    ),
]
OptOutTagOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--opt-out-tag",
        metavar="KEY[=VALUE]",
        help="Leave out principals carrying this tag, KEY or KEY=VALUE (repeatable).",
    ),
]
SuppressionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--suppressions",
        metavar="FILE",
        help="Suppressions file (JSON or YAML; default: .iamtrim-suppressions.yaml/.json if present).",
    ),
]
ReviewFormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="[" + "|".join(_REVIEW_FORMATS) + "]",
        callback=_review_format,
        help="Report format.",
    ),
]
ReviewOutputOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", metavar="FILE", help="Write the report to FILE instead of stdout."),
]
ReviewFailOnOpt = Annotated[
    ReviewFailOn | None,
    typer.Option(
        "--fail-on",
        metavar=_choices(ReviewFailOn),
        help="Exit 1 on new findings, new high-severity ones, any high-severity one, or missing "
        "(denied or refused) calls. Suppressed findings never fail.",
    ),
]


@app.command(
    "review",
    cls=_Command,
    epilog=_example(
        "iamtrim review --store usage.sqlite \\", "    --authz account-authorization-details.json"
    ),
)
def review_cmd(
    store: StoreOpt = None,
    authz: ReviewAuthzOpt = None,
    from_aws: ReviewFromAwsOpt = False,
    accounts: ReviewAccountsOpt = None,
    profile: ProfileOpt = "",
    region: RegionOpt = "",
    endpoint_url: EndpointOpt = "",
    role_arn: RoleArnOpt = "",
    principal: ReviewPrincipalOpt = None,
    idle_days: IdleDaysOpt = 90,
    min_age_days: MinAgeDaysOpt = 0,
    opt_out_tag: OptOutTagOpt = None,
    suppressions: SuppressionsOpt = None,
    fmt: ReviewFormatOpt = "markdown",
    output: ReviewOutputOpt = None,
    wait_lock: WaitLockOpt = DEFAULT_WAIT_LOCK,
    fail_on: ReviewFailOnOpt = None,
) -> None:
    """Review every role and user: unused, risky and missing permissions, with history."""
    from iamtrim.errors import AwsError, FailOnFindings, OptionsError
    from iamtrim.render import review as render_review
    from iamtrim.review.history import FailOn, failing, load_suppressions, record_run
    from iamtrim.review.job import ReviewOptions
    from iamtrim.review.organization import load_accounts, not_reviewed, prepare_review

    if sum((authz is not None, from_aws, accounts is not None)) != 1:
        raise OptionsError(
            "review: give --authz FILE (aws iam get-account-authorization-details output), --from-aws "
            "or --accounts FILE, one of them"
        )
    if accounts is not None and role_arn:
        raise OptionsError(
            "review: --accounts names the role of each account; --role-arn does not go with it"
        )
    if suppressions is None:
        suppressions = next((Path(n) for n in _DEFAULT_SUPPRESSIONS if Path(n).is_file()), None)
    accepted = load_suppressions(suppressions) if suppressions is not None else ()
    specs = load_accounts(accounts) if accounts is not None else ()
    options = ReviewOptions(
        idle_days,
        principals=tuple(principal or ()),
        min_age_days=min_age_days,
        opt_out_tags=tuple(opt_out_tag or ()),
    )
    path = store or default_store_path()
    if not path.exists():
        raise InputError(f"no usage store at {path}: run `iamtrim ingest PATH --store {path}` first")
    aws = _aws(profile, region, endpoint_url, role_arn) if from_aws or accounts is not None else None
    run = prepare_review(options, authz=authz, aws=aws, via=role_arn, accounts=specs, origin=str(accounts))
    # Writable, unlike the other reading commands': the store keeps the review's history, written
    # under the store's writer lock (one writer at a time, as for ingest).
    with Store(path) as st, st.writer_lock(wait_lock, _err):
        result = run(st)
        report = record_run(st, result, accepted)
    _write_report(render_review.render(fmt, report), output)
    if result.failed_accounts:
        raise AwsError(not_reviewed(result))
    if fail_on is not None:
        hits = failing(report, FailOn(fail_on.value))
        if hits:
            raise FailOnFindings(f"review: {len(hits)} finding(s) for --fail-on {fail_on}")


def _write_report(text: str, output: Path | None) -> None:
    """The report to *output*, or standard output; a file that cannot be written is exit 4."""
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    try:
        output.write_text(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None


# CPython's cyclic collector runs a young-generation pass every 700 net allocations and, about
# every 70,000, a full pass over every tracked object. The reading commands build large acyclic
# structures (a principal's rows, its statements): generate-policy for a principal with 44,226
# rows spent 1.9 s of its CPU in 2,800 collections, 1.5 s of it in 12 full passes over the
# ~300 MiB it holds (docs/performance.md). A young pass every 100,000 allocations still frees
# the rare cycle, and full passes become rare. ingest keeps the defaults: its workers stream
# records, and its memory bound is measured with them.
GC_THRESHOLDS = (100_000, 50, 100)


def run() -> None:
    """The ``iamtrim`` program (the console script and ``python -m iamtrim``): :func:`main` with the
    cyclic collector set for a process that runs one command and exits."""
    if "ingest" not in sys.argv[1:2]:
        gc.set_threshold(*GC_THRESHOLDS)
    try:
        main()
    finally:
        # What is still alive dies with the process, but exiting, the interpreter runs one more
        # full collection over all of it (0.5 s after that generate-policy); frozen objects are
        # left out of it.
        gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI on `argv` (default: the process's arguments); always ends in `SystemExit`.

    Taking `argv` lets the docs-examples test run every example in-process with the exact error
    handling and exit codes of the installed command.
    """
    try:
        command = typer.main.get_command(app)  # built once: ~50 ms of start-up
        args = expand_multi_value(sys.argv[1:] if argv is None else argv, command)
        # Without standalone mode click returns the exit code of typer.Exit instead of exiting.
        code = command.main(args=args, prog_name="iamtrim", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.TyperException as exc:  # usage errors, bad option values: click's own message
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _err(str(exc))
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except IamtrimError as exc:
        _err(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _err("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        _err("interrupted; everything committed so far is kept")
        sys.exit(130)
    except BrokenPipeError:
        # The reader of standard output went away (`| head`): nothing to say, and nobody to say
        # it to; stop writing quietly, as other Unix tools do.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as exc:  # a file the run needs: no permission, disk full, exists, not a folder
        _err(_os_message(exc))
        sys.exit(InputError.exit_code)
    except MemoryError:
        if os.environ.get("IAMTRIM_DEBUG"):
            raise
        _err("out of memory: an input too large to hold (set IAMTRIM_DEBUG=1 for a traceback)")
        sys.exit(InputError.exit_code)
    except RecursionError:
        if os.environ.get("IAMTRIM_DEBUG"):
            raise
        _err("an input nested too deeply to read (set IAMTRIM_DEBUG=1 for a traceback)")
        sys.exit(InputError.exit_code)
    except Exception as exc:
        if os.environ.get("IAMTRIM_DEBUG"):
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (set IAMTRIM_DEBUG=1 for a traceback)")
        sys.exit(1)
