"""The command line: options → library call → render → exit code. The only place that prints or exits.

Exit codes: 0 ok, 1 findings at or above --fail-on, 2 usage error (bad option, unknown principal),
3 AWS error, 4 bad input (nothing readable, unusable store).
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from iamtrim.errors import IamtrimError, InputError
from iamtrim.ingest import IngestReport, default_store_path, ingest, load_events
from iamtrim.model import FileReport
from iamtrim.query import principal_usage, resolve_principal_name, summarize_principals
from iamtrim.render import policy as render_policy
from iamtrim.render import usage as render_usage
from iamtrim.store import Store
from iamtrim.synth import SynthOptions, Target, generate_identity_policy

app = typer.Typer(
    name="iamtrim",
    help="Least-privilege IAM policies from what AWS principals actually did.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print locals: they may hold credentials
)


class Format(StrEnum):
    table = "table"
    json = "json"


EventsOpt = Annotated[
    list[Path] | None,
    typer.Option("--events", help="CloudTrail files or folders to read (stateless; repeatable)."),
]
StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Usage store from `iamtrim ingest` (default: $IAMTRIM_STORE or "
                                 "./iamtrim-usage.sqlite)."),
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output format.")]


def _err(message: str) -> None:
    typer.echo(f"iamtrim: {message}", err=True)


def _open_usage(events: list[Path] | None, store: Path | None) -> Store:
    if events and store:
        raise typer.BadParameter("give --events or --store, not both")
    if events:
        return load_events(events)
    path = store or default_store_path()
    if not path.exists():
        raise InputError(f"no usage store at {path}: run `iamtrim ingest PATH --store {path}` "
                         "or pass --events PATH")
    return Store(path)


@app.command("ingest")
def ingest_cmd(
    paths: Annotated[list[Path], typer.Argument(help="CloudTrail files or folders (recursively).")],
    store: StoreOpt = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: cores).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print problems.")] = False,
) -> None:
    """Read CloudTrail records into the usage store (incremental: files and events already
    ingested are not counted again)."""
    path = store or default_store_path()
    progress = None
    show_bar = sys.stderr.isatty() and not quiet

    def on_file(report: FileReport) -> None:
        if report.error:
            _err(f"{report.path}: {report.error}")
        if progress is not None:
            progress.advance(task)

    with Store(path) as st:
        if show_bar:
            from rich.progress import Progress

            progress = Progress(transient=True)
            progress.start()
            task = progress.add_task("ingesting", total=None)
        try:
            report = ingest(paths, st, workers=workers, on_file=on_file,
                            on_start=lambda n: progress.update(task, total=n) if progress else None)
        finally:
            if progress is not None:
                progress.stop()
    if not quiet:
        _print_ingest(report, path)


def _print_ingest(report: IngestReport, path: Path) -> None:
    typer.echo(f"store: {path}")
    typer.echo(f"files: {report.files_read} read, {report.files_already} already ingested, "
               f"{len(report.files_failed)} with problems")
    typer.echo(f"records: {report.records} in {report.seconds:.2f}s "
               f"({report.records_per_second:,.0f}/s); usage keys: {report.usage_keys}; "
               f"principals: {report.principals}")
    if report.skips:
        typer.echo("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skips.items())))


@app.command("principals")
def principals_cmd(events: EventsOpt = None, store: StoreOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the principals seen, with how much they used and were denied."""
    with _open_usage(events, store) as st:
        summaries = summarize_principals(st)
    if fmt is Format.json:
        typer.echo(render_usage.principals_json(summaries))
    else:
        typer.echo(render_usage.principals_table(summaries))


@app.command("usage")
def usage_cmd(
    principal: Annotated[str, typer.Argument(help="Principal ARN, or a unique role/user name.")],
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """What one principal really used (and was denied), with counts, times and context."""
    with _open_usage(events, store) as st:
        p = resolve_principal_name(st, principal)
        usage = principal_usage(st, p)
    if fmt is Format.json:
        typer.echo(render_usage.usage_json(usage))
    else:
        typer.echo(render_usage.usage_table(usage))


class PolicyFormat(StrEnum):
    json = "json"
    policy = "policy"
    terraform = "terraform"
    cloudformation = "cloudformation"


@app.command("generate-policy")
def generate_policy_cmd(
    principal: Annotated[str, typer.Argument(help="Principal ARN, or a unique role/user name.")],
    events: EventsOpt = None,
    store: StoreOpt = None,
    fmt: Annotated[PolicyFormat, typer.Option("--format", help="Output format.")] = PolicyFormat.json,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Write one file per policy here.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Show the evidence behind each statement.")] = False,
    no_conditions: Annotated[bool, typer.Option("--no-conditions", help="Omit aws:SourceVpce / kms:ViaService.")] = False,
    target: Annotated[Target, typer.Option("--target", help="Size limits to meet.")] = Target.MANAGED,
    prefix_threshold: Annotated[int, typer.Option(
        "--prefix-threshold", min=1,
        help="Distinct keys (or resources) above which a folder becomes prefix/*.")] = 10,
) -> None:
    """The smallest identity policy that still allows everything PRINCIPAL was seen doing."""
    if out_dir is not None and fmt is not PolicyFormat.policy:
        _err("--out-dir writes policy documents: use it with --format policy")
        sys.exit(2)
    with _open_usage(events, store) as st:
        p = resolve_principal_name(st, principal)
        generated = generate_identity_policy(
            p, st.usage(p.arn),
            SynthOptions(conditions=not no_conditions, prefix_threshold=prefix_threshold, target=target),
        )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, text in render_policy.policy_documents(generated):
            (out_dir / f"{name}.json").write_text(text)
    if fmt is PolicyFormat.json:
        typer.echo(render_policy.to_json(generated, explain=explain))
    elif fmt is PolicyFormat.policy:
        if out_dir is None:
            typer.echo(render_policy.to_policy(generated))
        else:
            typer.echo("\n".join(str(out_dir / f"{n}.json") for n, _ in render_policy.policy_documents(generated)))
    elif fmt is PolicyFormat.terraform:
        typer.echo(render_policy.to_terraform(generated, target))
    else:
        typer.echo(render_policy.to_cloudformation(generated, target))
    if explain and fmt is not PolicyFormat.json:
        typer.echo(render_policy.explain_text(generated), err=True)


def main() -> None:
    try:
        app(standalone_mode=False)
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
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("IAMTRIM_DEBUG"):
            raise
        _err(f"internal error: {type(exc).__name__}: {exc} (set IAMTRIM_DEBUG=1 for a traceback)")
        sys.exit(1)
