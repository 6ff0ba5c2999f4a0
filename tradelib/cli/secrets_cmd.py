"""`tradelib secrets …`: master key, TOTP enrolment, encrypted API keys and the key check."""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError, UnsafeApiKey

if TYPE_CHECKING:
    from tradelib.config import Settings
    from tradelib.keycheck import KeyCheck
    from tradelib.secrets import Credentials, SecretBox
    from tradelib.store import Store

app = typer.Typer(
    help="API keys (encrypted at rest), the master key, the TOTP second factor and the key check.",
    no_args_is_help=True,
)

ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts (default: cli:<your user name>)")
]
LabelOption = Annotated[str, typer.Option("--label", help="Name of the key pair")]
KeyringOption = Annotated[
    bool, typer.Option("--keyring", help="Keep the value in the OS keyring instead of printing it")
]


def _by(value: str | None) -> str:
    return value or f"cli:{getpass.getuser()}"


def _now() -> datetime:
    return datetime.now(UTC)


@app.command("new-master-key")
def new_master_key(keyring: KeyringOption = False) -> None:
    """Make a master key: printed once for TRADELIB_MASTER_KEY, or saved in the OS keyring."""
    from tradelib.secrets import (
        MASTER_KEY_ENTRY,
        MASTER_KEY_ENV,
        generate_master_key,
        keyring_set,
        parse_master_key,
    )
    from tradelib.secrets.sources import keyring_get, keyring_place

    key = generate_master_key()
    if not keyring:
        typer.echo(f"{MASTER_KEY_ENV}={key}")
        return
    try:
        existing, _ = keyring_get(MASTER_KEY_ENTRY)
        if existing is not None:
            raise TradelibError(
                f"{keyring_place(MASTER_KEY_ENTRY)} already holds a master key: replacing it "
                "would make every stored API key unreadable; use `tradelib secrets rotate`"
            )
        keyring_set(MASTER_KEY_ENTRY, key)
    except TradelibError as exc:
        fail(exc)
    key_id = parse_master_key(key, keyring_place(MASTER_KEY_ENTRY)).key_id
    typer.echo(f"master key {key_id} saved in {keyring_place(MASTER_KEY_ENTRY)}")


@app.command("new-totp")
def new_totp(account: str = "tradelib", keyring: KeyringOption = False) -> None:
    """Make a TOTP secret and print its otpauth:// URI to enrol in an authenticator app."""
    import pyotp

    from tradelib.secrets import TOTP_ENTRY, TOTP_SECRET_ENV, keyring_set, new_totp_secret

    secret = new_totp_secret()
    uri = pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name="tradelib")
    if keyring:
        try:
            keyring_set(TOTP_ENTRY, secret)
        except TradelibError as exc:
            fail(exc)
        typer.echo("TOTP secret saved in the OS keyring; enrol it in your authenticator app:")
    else:
        typer.echo(f"{TOTP_SECRET_ENV}={secret}")
    typer.echo(uri)


@app.command("set-key")
def set_key(
    exchange: Annotated[str, typer.Option(help="Exchange id, e.g. binance")],
    label: LabelOption = "main",
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a stored pair without asking")
    ] = False,
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Encrypt and store an API key pair (asked for without echo); asks before replacing one."""
    from tradelib.secrets import Credentials, SecretBox, check_key_name, load_master_key
    from tradelib.store import open_store

    try:
        check_key_name(exchange, label)
    except TradelibError as exc:
        fail(exc)
    settings = settings_or_exit(store_url=store)
    try:
        box = SecretBox(load_master_key())
        with open_store(settings.store_url) as db:  # closed while the person types
            existing = db.get_api_key(exchange, label)
    except TradelibError as exc:
        fail(exc)
        return
    if existing is not None and not replace:
        since = f"{existing.created_at:%Y-%m-%d %H:%M} UTC" if existing.created_at else "?"
        question = f"An API key pair for {exchange}/{label} is stored (since {since}). Replace it?"
        if not typer.confirm(question, default=False, err=True):
            typer.echo("kept the stored key pair; nothing was changed", err=True)
            raise typer.Exit(1)
        replace = True
    api_key = typer.prompt("API key", hide_input=True, err=True)
    api_secret = typer.prompt("API secret", hide_input=True, err=True)
    credentials = Credentials(exchange, label, api_key, api_secret)
    _save(settings, box, credentials, replace=replace, by=_by(by))
    verb = "replaced" if existing is not None else "stored"
    typer.echo(f"{verb} the API key pair {exchange}/{label} (encrypted, master key {box.key_id})")


def _save(
    settings: Settings, box: SecretBox, credentials: Credentials, *, replace: bool, by: str
) -> None:
    from tradelib.secrets import save_credentials
    from tradelib.store import open_store

    try:
        with open_store(settings.store_url) as db:
            save_credentials(db, box, credentials, replace=replace, actor=by, now=_now())
    except TradelibError as exc:
        fail(exc)


@app.command("list")
def list_keys(store: StoreOption = None) -> None:
    """List stored API key pairs (names, master key ids and last checks; never values)."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            records = db.list_api_keys()
            checks = {(c.exchange, c.label): c for c in reversed(db.list_key_checks(limit=200))}
    except TradelibError as exc:
        fail(exc)
        return
    for record in records:
        check = checks.get((record.exchange, record.label))
        last = f"last check {check.verdict} {check.checked_at:%Y-%m-%d %H:%M}" if check else ""
        typer.echo(
            f"{record.exchange}/{record.label}  created {record.created_at}  "
            f"master key {record.key_id or '(unknown)'}  {last}".rstrip()
        )
    if not records:
        typer.echo("no API keys stored")


@app.command("rotate")
def rotate_cmd(
    keyring: Annotated[
        bool, typer.Option("--keyring", help="Make the new key and keep it in the OS keyring")
    ] = False,
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Re-encrypt every stored API key under a new master key, all at once or not at all.

    The new key comes from TRADELIB_NEW_MASTER_KEY or (--keyring) the OS keyring. If the
    command is interrupted, run it again: it finishes where it stopped.
    """
    from tradelib.secrets import rotate
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            report = rotate(db, actor=_by(by), now=_now(), to_keyring=keyring)
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(
        f"re-encrypted {report.rotated} API key pair(s) from master key {report.old_key_id} to "
        f"{report.new_key_id} ({report.already} already under it)"
    )
    if report.next_step:
        typer.echo(report.next_step)


def _describe(check: KeyCheck) -> list[str]:
    r = check.restrictions

    def show(value: bool | None, yes: str, no: str) -> str:
        return "not reported" if value is None else yes if value else no

    lines = [
        f"{check.exchange}/{check.label} key, as {check.exchange} reports it:",
        f"  read account        {show(r.can_read, 'yes', 'NO')}",
        f"  trade spot          {show(r.can_trade_spot, 'yes', 'NO')}",
        f"  withdraw            {show(r.can_withdraw, 'YES', 'no')}",
        f"  IP whitelist        {show(r.ip_restricted, 'yes', 'NO (any IP)')}",
    ]
    lines += [
        f"  problem: {p.code.value} ({p.severity.value}): {p.message}" for p in check.problems
    ]
    return lines


async def _check(settings: Settings, db: Store, label: str, by: str) -> KeyCheck:
    from tradelib.domain import Mode
    from tradelib.exchange.factory import open_exchange
    from tradelib.keycheck import require_safe_key
    from tradelib.secrets import SecretBox, load_credentials, load_master_key

    creds = load_credentials(db, SecretBox(load_master_key()), settings.exchange.id, label)
    live = settings.model_copy(update={"mode": Mode.LIVE})
    exchange = open_exchange(live, api_key=creds.api_key, api_secret=creds.api_secret)
    try:
        return await require_safe_key(exchange, db, label=label, actor=by, now=_now())
    finally:
        await exchange.close()


@app.command("check-key")
def check_key(label: LabelOption = "main", store: StoreOption = None, by: ByOption = None) -> None:
    """Ask the exchange what the stored key may do; exit 1 when live trading would refuse it."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            check = asyncio.run(_check(settings, db, label, _by(by)))
    except UnsafeApiKey as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    except TradelibError as exc:
        fail(exc)
        return
    for line in _describe(check):
        typer.echo(line)
    accepted = f" (accepted: {', '.join(sorted(check.override.accept))})" if check.override else ""
    typer.echo(f"verdict: {check.verdict}{accepted}")


@app.command("accept-key-risk")
def accept_key_risk_cmd(
    accept: Annotated[
        list[str] | None,
        typer.Option("--accept", help="Problem code to accept, e.g. no_ip_restriction"),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (audited)")] = None,
    code: Annotated[str | None, typer.Option("--code", help="TOTP code")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the stored override")] = False,
    label: LabelOption = "main",
    store: StoreOption = None,
    by: ByOption = None,
) -> None:
    """Let live trading start despite named key problems (TOTP + reason, audited), or --clear."""
    from tradelib.keycheck import KeyOverride, accept_key_risk, clear_key_risk
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    exchange = settings.exchange.id
    try:
        with open_store(settings.store_url) as db:
            if clear:
                had = clear_key_risk(db, exchange, label, actor=_by(by), now=_now())
                typer.echo("override removed" if had else "no override was stored")
                return
            override = KeyOverride.of(accept or [], reason or "")
            accept_key_risk(db, exchange, label, override, actor=_by(by), now=_now(),
                            totp_code=code)  # fmt: skip
    except TradelibError as exc:
        fail(exc)
        return
    typer.echo(
        f"live trading on {exchange}/{label} will accept: {', '.join(sorted(override.accept))} "
        "(until the key is replaced or `--clear`); every start is still checked and audited"
    )
