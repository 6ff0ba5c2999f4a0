"""`tradelib secrets …`: master key, TOTP enrolment and encrypted API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from tradelib.cli.options import StoreOption, fail, settings_or_exit
from tradelib.errors import TradelibError

app = typer.Typer(
    help="API keys (encrypted at rest) and the TOTP second factor.", no_args_is_help=True
)


@app.command("new-master-key")
def new_master_key() -> None:
    """Print a new master key for TRADELIB_MASTER_KEY (shown once: store it safely)."""
    from tradelib.secrets import MASTER_KEY_ENV, generate_master_key

    typer.echo(f"{MASTER_KEY_ENV}={generate_master_key()}")


@app.command("new-totp")
def new_totp(account: str = "tradelib") -> None:
    """Print a new TOTP secret and its otpauth:// URI to enrol in an authenticator app."""
    import pyotp

    from tradelib.secrets import TOTP_SECRET_ENV, new_totp_secret

    secret = new_totp_secret()
    typer.echo(f"{TOTP_SECRET_ENV}={secret}")
    typer.echo(pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name="tradelib"))


@app.command("set-key")
def set_key(
    exchange: Annotated[str, typer.Option(help="Exchange id, e.g. binance")],
    label: Annotated[str, typer.Option(help="Name of this key pair")] = "main",
    store: StoreOption = None,
) -> None:
    """Encrypt and store an API key pair (asked for without echo)."""
    from tradelib.secrets import Credentials, SecretBox, master_key_from_env, save_credentials
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    api_key = typer.prompt("API key", hide_input=True)
    api_secret = typer.prompt("API secret", hide_input=True)
    try:
        box = SecretBox(master_key_from_env())
        with open_store(settings.store_url) as db:
            save_credentials(db, box, Credentials(exchange, label, api_key, api_secret))
    except TradelibError as exc:
        fail(exc)
    typer.echo(f"stored the API key pair {exchange}/{label} (encrypted)")


@app.command("list")
def list_keys(store: StoreOption = None) -> None:
    """List stored API key pairs (names only, never values)."""
    from tradelib.store import open_store

    settings = settings_or_exit(store_url=store)
    try:
        with open_store(settings.store_url) as db:
            records = db.list_api_keys()
    except TradelibError as exc:
        fail(exc)
        return
    for record in records:
        typer.echo(f"{record.exchange}/{record.label}  created {record.created_at}")
    if not records:
        typer.echo("no API keys stored")
