"""`tradelib kill | release | status | breakers reset`: the safety controls from a shell.

Every command opens its own store handle (and `kill` its own exchange connection), so it works
while an engine runs — or hangs — in another process sharing the store (PostgreSQL; the DuckDB
file allows one process at a time).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import structlog
import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

if TYPE_CHECKING:
    from tradelib.config import Settings
    from tradelib.control import RiskControl
    from tradelib.store import HeartbeatRecord, Store

breakers_app = typer.Typer(help="Circuit breakers.", no_args_is_help=True)

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts (default: cli:<your user name>)")
]
CodeOption = Annotated[
    str | None, typer.Option("--code", help="TOTP code from your authenticator app")
]


# Log lines (and log-sink alerts) that say what these commands print themselves.
_PRINTED = frozenset({
    "kill switch engaged", "kill switch released", "kill switch release refused",
    "kill switch enforced", "kill switch enforcement incomplete",
})  # fmt: skip
_PRINTED_ALERTS = frozenset({"kill_switch", "breaker_tripped"})


def _drop_printed(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if event.get("event") in _PRINTED or (
        event.get("event") == "alert" and event.get("kind") in _PRINTED_ALERTS
    ):
        raise structlog.DropEvent
    return event


@contextmanager
def _said_once(settings: Settings) -> Iterator[None]:
    """On a console, what the command prints is not logged a second time (JSON logs keep all:
    they feed a log pipeline, not a person; the store keeps the events and the audit)."""
    if settings.log_format != "pretty":
        yield
        return
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[_drop_printed, *processors])
    try:
        yield
    finally:
        structlog.configure(processors=processors)


def _by(value: str | None) -> str:
    return value or f"cli:{getpass.getuser()}"


def _control(store: Store, settings: Settings, by: str) -> RiskControl:
    from tradelib.control import RiskControl

    return RiskControl(
        store,
        settings,
        mode=settings.mode,
        exchange_id=settings.exchange.id,
        clock=lambda: datetime.now(UTC),
        actor=by,
    )


def kill_cmd(
    flatten: Annotated[
        bool, typer.Option("--flatten", help="Also close every open position (limit IOC)")
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why")] = "manual kill from the CLI",
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Engage the kill switch and enforce it now: cancel every order (and flatten)."""
    from tradelib.control import kill

    settings = settings_or_exit(store_url=store)
    try:
        with _said_once(settings):
            actions = kill(flatten=flatten, reason=reason, by=_by(by), settings=settings)
    except TradelibError as exc:
        fail(exc)
        return
    typer.secho(
        f"KILL SWITCH ENGAGED ({settings.mode.value}, {settings.exchange.id})"
        + (" with flatten" if flatten else ""),
        fg="red",
        bold=True,
    )
    for action in actions:
        typer.echo(f"  {action.kind.value:<15} {action.symbol:<12} {action.reason}")
    if not actions and _paper_engine_enforces(settings):
        typer.echo("  the running paper engine enforces it (its paper venue is in its process)")
    elif not actions:
        typer.echo("  no open orders" + (" or positions" if flatten else "") + " to act on")
    if any("-> FAILED" in a.reason for a in actions):
        typer.secho("some actions failed: see above and `tradelib status`", fg="red", err=True)
        raise typer.Exit(1)


def _paper_engine_enforces(settings: Settings) -> bool:
    from tradelib.control.kill import paper_engine_alive
    from tradelib.domain import Mode
    from tradelib.store import open_store

    if settings.mode is not Mode.PAPER:
        return False
    try:
        with open_store(settings.store_url) as db:
            return paper_engine_alive(db, settings)
    except TradelibError:
        return False


def release_cmd(
    reason: Annotated[str, typer.Option("--reason", help="Why it is safe to trade again")],
    code: CodeOption = None,
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Release the kill switch (needs a TOTP code; refusals are audited)."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with _said_once(settings), open_store(settings.store_url) as db:
            transition = _control(db, settings, _by(by)).release_kill(_by(by), reason, code)
    except TradelibError as exc:
        fail(exc)
        return
    if not transition.accepted:
        typer.secho(f"refused: {transition.reason}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(transition.reason)


def status_cmd(store: StoreOption = None) -> None:
    """Show the kill switch, the breakers, any reconciliation halt and the engines' heartbeats."""
    from tradelib.orders import halt_reason
    from tradelib.risk.breakers import Breaker
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            control = _control(db, settings, "cli")
            kill = control.kill_state()
            breakers = control.breaker_state()
            halted = halt_reason(db)
            beats = db.list_heartbeats()
    except TradelibError as exc:
        fail(exc)
        return
    rows: list[tuple[str, str, str]] = []
    if kill.engaged:
        since = kill.since.isoformat() if kill.since else "?"
        what = "ENGAGED" + (" + flatten" if kill.flatten else "")
        rows.append(("kill switch", what, f"since {since} by {kill.by}: {kill.reason}"))
    else:
        rows.append(("kill switch", "off", ""))
    tripped = breakers.tripped
    for breaker in Breaker:
        trip = tripped.get(breaker)
        if trip is None:
            rows.append((f"breaker {breaker.value}", "ok", ""))
        else:
            detail = f"{trip.at.isoformat()}: {trip.reason}"
            rows.append((f"breaker {breaker.value}", "TRIPPED", detail))
    rows.append(("reconciliation", "HALTED" if halted else "ok", halted or ""))
    rows.extend(engine_rows(beats))
    typer.echo(f"mode {settings.mode.value}, exchange {settings.exchange.id}, store {db.url}")
    width = max(len(r[0]) for r in rows)
    typer.echo(f"{'control':<{width}}  {'state':<18}  detail")
    for name, state, detail in rows:
        typer.echo(f"{name:<{width}}  {state:<18}  {detail}".rstrip())


def engine_rows(beats: list[HeartbeatRecord]) -> list[tuple[str, str, str]]:
    """One status row per engine heartbeat: alive/stale/stopped and its last cycle."""
    from tradelib.service.heartbeat import describe_heartbeat

    now = datetime.now(UTC)
    if not beats:
        return [("engines", "none", "no engine has run on this store (`tradelib run`)")]
    rows = []
    for beat in beats:
        state, detail = describe_heartbeat(beat, now)
        rows.append((f"engine {beat.mode.value}/{beat.exchange}", state, detail))
    return rows


@breakers_app.command("reset")
def breakers_reset(
    name: Annotated[str, typer.Argument(help="Breaker to reset, e.g. daily_loss")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is safe to trade again")],
    code: CodeOption = None,
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Reset a tripped breaker (live mode needs a TOTP code)."""
    from tradelib.risk.breakers import Breaker
    from tradelib.store import open_store

    names = [b.value for b in Breaker]
    if name not in names:
        typer.secho(f"error: unknown breaker {name!r}; one of {', '.join(names)}", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit(store_url=store)
    try:
        with _said_once(settings), open_store(settings.store_url) as db:
            control = _control(db, settings, _by(by))
            was = control.breaker_state().is_tripped(Breaker(name))
            control.reset_breaker(name, _by(by), reason, code)
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(f"{name} breaker reset" if was else f"{name} breaker was not tripped: nothing to do")


def register(app: typer.Typer) -> None:
    """Add kill, release, status and the breakers group to the root app."""
    app.command("kill")(kill_cmd)
    app.command("release")(release_cmd)
    app.command("status")(status_cmd)
    app.add_typer(breakers_app, name="breakers")
