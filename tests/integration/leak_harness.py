"""The leak test's machinery: known fake secrets, a place to run entry points, and a scanner.

An entry point is `async def run(ctx: LeakContext) -> None`: it uses the product the way a
person would (engine, notebook, CLI, …) with the fake secrets in play, and records what it
saw (`ctx.record`, `ctx.raised`). `ctx.cli(...)` and `ctx.notebook(...)` run the real command
and a real papermill execution, so most new entry points are one line in test_leak.py.
Afterwards `scan_everything` looks for every secret (raw, base64, hex; the master keys also
as their raw bytes) in the captured output, each recorded text and exception, every file
under the test's directory and every column of every store table.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tradelib.store import open_store
from tradelib.testing.binance_emulator import BinanceEmulator

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CLI = [sys.executable, "-c", "from tradelib.cli import app; app()"]  # the `tradelib` command
LIMIT_S = 300.0  # a safety net against hangs, never a timing assertion


@dataclass(frozen=True)
class FakeSecrets:
    """Distinctive fake values; none of them may show up anywhere (the keys are base64)."""

    api_key: str = "TLLEAKapiKEY7Q2v9XcB3nR5mK8wZp4sD6fH1jL0aQeTuYiOpAsDfGhJkLzXcVbNm"
    api_secret: str = "TLLEAKapiSECRET4kW8pZ2vN6bX1cM9qR3tY7uI5oP0aS2dF4gH6jK8lZ1xC3vB5n"
    totp_secret: str = "TLLEAKTOTPSECRETQWERTYUIOPASDFGH"  # base32, 160 bits
    webhook_token: str = "TLLEAKwebhookTOKEN9f8e7d6c5b4a3z2y1x0w"
    master_key: str = base64.b64encode(b"TLLEAK master key 32 bytes long!").decode()
    new_master_key: str = base64.b64encode(b"TLLEAK rotated master key 32 b!!").decode()
    audit_key: str = base64.b64encode(b"TLLEAK audit chain HMAC key 32b!").decode()

    def named(self) -> dict[str, str]:
        """{name: value} of every secret."""
        return {
            "API key": self.api_key,
            "API secret": self.api_secret,
            "TOTP secret": self.totp_secret,
            "webhook token": self.webhook_token,
            "master key": self.master_key,
            "new master key": self.new_master_key,
            "audit key": self.audit_key,
        }


@dataclass(frozen=True)
class Hit:
    """One secret found somewhere it must never be."""

    secret: str
    form: str
    where: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.where}"


class Scanner:
    """Finds any form of any secret in text, bytes, files and store tables."""

    def __init__(self, secrets: FakeSecrets) -> None:
        self.patterns: list[tuple[str, str, bytes]] = []
        for name, value in secrets.named().items():
            raw = value.encode()
            forms = {"raw": raw, "base64": base64.b64encode(raw), "hex": raw.hex().encode()}
            if name.endswith(("master key", "audit key")):  # base64 of 32 raw key bytes
                key = base64.b64decode(value)
                forms.update({"key bytes": key, "key hex": key.hex().encode()})
            self.patterns += [(name, form, pattern) for form, pattern in forms.items()]

    def scan_bytes(self, where: str, data: bytes) -> list[Hit]:
        """Hits of every secret form inside `data`."""
        return [Hit(n, f, where) for n, f, p in self.patterns if p in data]

    def scan_value(self, where: str, value: Any) -> list[Hit]:
        """Hits inside one value of any type (text, bytes, JSON-like, anything printable)."""
        if value is None:
            return []
        if isinstance(value, bytes | bytearray | memoryview):
            return self.scan_bytes(where, bytes(value))
        if isinstance(value, dict | list | tuple):
            text = json.dumps(value, default=str, ensure_ascii=False)
        else:
            text = str(value)
        return self.scan_bytes(where, text.encode())

    def scan_files(self, root: Path) -> list[Hit]:
        """Hits in every file under `root` (reports, notebooks, database files, logs)."""
        hits: list[Hit] = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            hits += self.scan_bytes(f"file {path.relative_to(root)}", path.read_bytes())
        return hits

    def scan_store(self, url: str, label: str) -> list[Hit]:
        """Hits in every column of every row of every table of the store at `url`."""
        hits: list[Hit] = []
        with open_store(url) as store:
            for table in store.table_names():
                columns = [
                    str(r[0])
                    for r in store._query(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                        "AND table_schema = current_schema() ORDER BY ordinal_position",
                        (table,),
                    )
                ]
                for i, row in enumerate(store._query(f'SELECT * FROM "{table}"')):
                    for column, value in zip(columns, row, strict=True):
                        where = f"store {label} table {table} column {column} row {i}"
                        hits += self.scan_value(where, value)
        return hits


class WebhookReceiver:
    """A local webhook endpoint: records every body it is sent, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, token: str) -> str:
        """A Slack-style incoming-webhook URL with `token` in its path."""
        return f"http://127.0.0.1:{self.server.server_port}/services/T01/B02/{token}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class LeakContext:
    """What an entry point gets: secrets, a running emulator and webhook, a store, tmp dir."""

    secrets: FakeSecrets
    tmp: Path
    store_url: str
    emulator: BinanceEmulator
    webhook: WebhookReceiver
    env: dict[str, str]
    texts: list[tuple[str, str]] = field(default_factory=list)
    raised: list[BaseException] = field(default_factory=list)

    def record(self, where: str, text: str) -> None:
        """Keep a text the entry point produced (command output, a message shown)."""
        self.texts.append((where, text))

    @contextlib.contextmanager
    def expect(self, *kinds: type[BaseException]) -> Iterator[None]:
        """The block must raise one of `kinds`; its text and traceback are scanned."""
        try:
            yield
        except kinds as exc:
            self.raised.append(exc)
            return
        raise AssertionError(f"expected one of {[k.__name__ for k in kinds]} to be raised")

    async def cli(
        self, *args: str, input: str | None = None, expect: int | None = 0, **env: str
    ) -> str:
        """Run the real `tradelib` command in its own process; returns stdout+stderr."""
        proc = await self.spawn(*args, **env)
        out, _ = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), LIMIT_S
        )
        text = out.decode(errors="replace")
        self.record(f"`tradelib {' '.join(args)}` output", text)
        if expect is not None:
            assert proc.returncode == expect, f"tradelib {args} -> {proc.returncode}: {text}"
        return text

    async def spawn(self, *args: str, **env: str) -> asyncio.subprocess.Process:
        """Start the real `tradelib` command (stdin a pipe, stdout+stderr one pipe)."""
        return await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            env={**self.env, **env},
            cwd=self.tmp,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def notebook(self, name: str, **parameters: Any) -> dict[str, Any]:
        """Execute notebooks/`name` with papermill (real kernel); returns the executed JSON."""
        import papermill as pm

        out = self.tmp / "executed" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            pm.execute_notebook,
            str(NOTEBOOKS / name),
            str(out),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(self.tmp),
        )
        return dict(json.loads(out.read_text()))


def scan_everything(ctx: LeakContext, captured: str, backend: str) -> list[Hit]:
    """Every hit in output, recorded texts, exceptions, webhook bodies, files and the store."""
    scanner = Scanner(ctx.secrets)
    hits = scanner.scan_value("captured stdout/stderr (logs)", captured)
    for where, text in ctx.texts:
        hits += scanner.scan_value(where, text)
    for exc in ctx.raised:
        shown = "".join(traceback.format_exception(exc))
        hits += scanner.scan_value(f"exception {type(exc).__name__}", f"{exc}\n{shown}")
    for i, body in enumerate(ctx.webhook.bodies):
        hits += scanner.scan_value(f"webhook message {i}", body)
    hits += scanner.scan_files(ctx.tmp)
    hits += scanner.scan_store(ctx.store_url, backend)
    return hits
