"""`tradelib audit …`: show, verify and accept findings of the keyed, anchored audit log.

`verify` exits 0 when the log is intact, 1 when it was cut or altered, 2 when it cannot be
verified here (no key, another key, a bad setting) and 3 when it verifies but holds entries a
person has to accept (legacy unkeyed entries from before migration 0004).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

if TYPE_CHECKING:
    from tradelib.audit import VerifyReport

app = typer.Typer(help="The append-only, keyed and anchored audit log.", no_args_is_help=True)

EXIT_CODES = {"intact": 0, "broken": 1, "unverified": 2, "review": 3}
HEADLINES = {
    "broken": "AUDIT LOG BROKEN",
    "unverified": "AUDIT LOG NOT VERIFIED",
    "review": "AUDIT LOG NEEDS REVIEW",
}


def _print_report(report: VerifyReport) -> None:
    if report.ok:
        key = f", audit key {report.key_id}" if report.key_id else ""
        typer.echo(f"audit log intact: {report.rows} entries verified{key}")
    else:
        where = f" at entry {report.broken_id}" if report.broken_id is not None else ""
        typer.echo(f"{HEADLINES[report.status.value]}{where}: {report.reason}")
        for finding in report.findings:
            typer.echo(f"  also: {finding}")
        if report.hint:
            typer.echo(f"what to do: {report.hint}")
    for note in report.notes:
        typer.echo(f"  note: {note}")


@app.command()
def verify(store: StoreOption = None) -> None:
    """Walk the chain and its anchors; exit 1 and name the first broken entry if it was altered."""
    from tradelib.audit import AuditLog
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            report = AuditLog(db).verify()
    except TradelibError as exc:
        fail(exc)
        return
    _print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_CODES[report.status.value])


@app.command()
def accept(
    reason: Annotated[str, typer.Option("--reason", help="What you checked, and why it is fine")],
    by: Annotated[str | None, typer.Option("--by", help="Who accepts (default: cli:<user>)")] = (
        None
    ),
    store: StoreOption = None,
) -> None:
    """Accept the log's findings (legacy entries, recorded deletions) in an audited entry."""
    from tradelib.audit import AuditLog
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    who = by or f"cli:{getpass.getuser()}"
    try:
        with open_store(settings.store_url) as db:
            report = AuditLog(db).accept(who, reason, datetime.now(UTC))
    except TradelibError as exc:
        fail(exc)
        return
    _print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_CODES[report.status.value])


@app.command("new-key")
def new_key() -> None:
    """Print a new random audit key for TRADELIB_AUDIT_KEY (share it with every writer)."""
    from tradelib.audit_anchor import AUDIT_KEY_ENV, generate_audit_key

    typer.echo(generate_audit_key())
    typer.echo(
        f"set {AUDIT_KEY_ENV} to this value on every machine that writes to the store, before "
        "the first audit entry is written; keep it outside the store and the repository",
        err=True,
    )


@app.command()
def show(
    limit: Annotated[int, typer.Option(min=1, help="How many of the latest entries")] = 20,
    store: StoreOption = None,
) -> None:
    """Print the latest audit entries."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            rows = db.list_audit()[-limit:]
    except TradelibError as exc:
        fail(exc)
        return
    for row in rows:
        typer.echo(
            f"{row.id:>6} {row.at.isoformat()} {row.actor:<12} {row.action:<24} {row.payload_json}"
        )
