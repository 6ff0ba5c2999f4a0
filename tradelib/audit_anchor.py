"""What the audit chain trusts that is not in the store: the HMAC key and the local checkpoint.

The key: `TRADELIB_AUDIT_KEY` (base64 of at least 32 bytes; every process and machine writing
one store must share it), else `<state dir>/audit.key`, created (mode 0600) on first use so a
fresh machine works out of the box. The checkpoint: `<state dir>/audit-anchors/<id>.json`, one
file per store location (a hash of the DuckDB file's real path, or of PostgreSQL host, port,
database and schema), recording a head the chain once had. See tradelib.audit for how both
are used.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets as _random
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tradelib.config import state_dir
from tradelib.domain import require_utc
from tradelib.errors import AuditError
from tradelib.logs import register_secret

AUDIT_KEY_ENV = "TRADELIB_AUDIT_KEY"
KEY_FILE = "audit.key"
CHECKPOINT_DIR = "audit-anchors"
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class AuditKey:
    """The audit HMAC key and where it came from; its repr never shows the key."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (16 hex digits): tells keys apart, reveals nothing."""
        return self.mac("tradelib audit key id")[:16]

    def mac(self, text: str) -> str:
        """HMAC-SHA256 of `text` as 64 hex digits."""
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()


def generate_audit_key() -> str:
    """A new random 256-bit audit key, base64-encoded for TRADELIB_AUDIT_KEY."""
    return base64.b64encode(_random.token_bytes(MIN_KEY_BYTES)).decode()


def key_file_path() -> Path:
    """Where the audit key is kept when TRADELIB_AUDIT_KEY is not set."""
    return state_dir() / KEY_FILE


def _decode(raw: str, where: str) -> bytes:
    register_secret(raw.strip())
    try:
        secret = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuditError(
            f"{where} is not valid base64; create a key with `tradelib audit new-key`"
        ) from None
    if len(secret) < MIN_KEY_BYTES:
        raise AuditError(
            f"{where} decodes to {len(secret)} bytes, fewer than {MIN_KEY_BYTES}; create a key "
            "with `tradelib audit new-key`"
        )
    return secret


def _read_key_file(path: Path) -> AuditKey:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditError(
                f"the audit key file {path} can be read by other users (mode "
                f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        raw = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the audit key file {path}: {exc}") from None
    return AuditKey(_decode(raw, f"the audit key file {path}"), str(path))


def _create_key_file(path: Path) -> None:
    """Write a new key file atomically; a concurrent creator's key wins if it came first."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(generate_audit_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another process created the key first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    except OSError as exc:
        raise AuditError(
            f"cannot create the audit key file {path}: {exc}; set {AUDIT_KEY_ENV} instead "
            "(create one with `tradelib audit new-key`)"
        ) from None


def load_audit_key(create: bool = True) -> AuditKey | None:
    """The audit key: TRADELIB_AUDIT_KEY, else the state-dir key file (created if `create`)."""
    raw = os.environ.get(AUDIT_KEY_ENV)
    if raw:
        return AuditKey(_decode(raw, AUDIT_KEY_ENV), AUDIT_KEY_ENV)
    path = key_file_path()
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    return _read_key_file(path)


def store_identity(url: str) -> str | None:
    """A stable name of the store's location (no user, no password); None for :memory:."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "duckdb":
        path = parts.path
        if path in ("/:memory:", ":memory:"):
            return None
        return "duckdb:" + os.path.realpath("/" + path.lstrip("/"))
    if scheme in ("postgresql", "postgres"):
        schema = dict(parse_qsl(parts.query)).get("schema") or "public"
        host = (parts.hostname or "localhost").lower()
        database = parts.path.lstrip("/") or parts.username or "postgres"
        return f"postgresql://{host}:{parts.port or 5432}/{database}?schema={schema}"
    host = parts.hostname or ""
    return f"{scheme}://{host}{parts.path}" + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A head the chain once had, as this machine saw it: entry `head_id` had `head_hash`."""

    store: str
    chain_id: str
    entries: int
    head_id: int | None
    head_hash: str
    at: datetime
    mac: str

    def signed_text(self) -> str:
        """What `mac` covers."""
        parts = [
            "checkpoint", self.store, self.chain_id, str(self.entries), str(self.head_id),
            self.head_hash,
        ]  # fmt: skip
        return "\x1f".join(parts)


def checkpoint_path(identity: str) -> Path:
    """The checkpoint file of the store at `identity` on this machine."""
    name = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return state_dir() / CHECKPOINT_DIR / f"{name}.json"


def read_checkpoint(identity: str) -> Checkpoint | None:
    """The local checkpoint of this store, None if there is none; AuditError if unreadable."""
    path = checkpoint_path(identity)
    try:
        data = json.loads(path.read_text("utf-8"))
        return Checkpoint(
            store=str(data["store"]),
            chain_id=str(data["chain_id"]),
            entries=int(data["entries"]),
            head_id=None if data["head_id"] is None else int(data["head_id"]),
            head_hash=str(data["head_hash"]),
            at=require_utc(datetime.fromisoformat(data["at"]), "checkpoint at"),
            mac=str(data["mac"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(
            f"the audit anchor file {path} is unreadable ({type(exc).__name__}: {exc}): it was "
            "damaged or edited; move it aside only after checking the store's audit log"
        ) from None


def write_checkpoint(checkpoint: Checkpoint) -> Path:
    """Atomically replace the local checkpoint file (write a temp file, fsync, rename)."""
    path = checkpoint_path(checkpoint.store)
    data = {
        "store": checkpoint.store,
        "chain_id": checkpoint.chain_id,
        "entries": checkpoint.entries,
        "head_id": checkpoint.head_id,
        "head_hash": checkpoint.head_hash,
        "at": checkpoint.at.isoformat(),
        "mac": checkpoint.mac,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AuditError(f"cannot write the audit anchor file {path}: {exc}") from None
    return path
