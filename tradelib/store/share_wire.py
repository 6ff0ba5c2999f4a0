"""The wire between the process that owns a DuckDB file and the other local processes using it.

Where: one Unix socket per database file, `/tmp/tradelib-<uid>/<hash>.sock`, the hash taken
over the file's real path (short whatever the path's length: socket paths are limited to ~107
bytes). The folder is the user's own (mode 0700, checked), the socket 0600, and both ends check
the other's uid with SO_PEERCRED. The folder is under /tmp on purpose, as tmux does:
$XDG_RUNTIME_DIR or $TMPDIR differ between a desktop session, cron, papermill and services, and
every process of the user must find the same socket.

What: each message is an 8-byte big-endian length followed by a pickle (protocol 5). A request
is `(op, body)`; an answer is `(True, value)` or `(False, error)` where `error` is a plain dict
(module, class name, message) that the client rebuilds into the same tradelib error class.
Errors never travel as pickled exceptions: an exception with odd constructor arguments, an
unpicklable attribute or a `__str__` that raises still arrives as a clear `StoreError`, and a
result that cannot be pickled becomes such an error instead of a broken connection.

Why pickle and not a JSON codec: both ends are the same user on the same machine (checked
before a single frame is read), who can read and write the database file directly anyway, so
unpickling their frames grants nothing new. Pickle carries every type the `Store` interface
uses (Decimal, aware datetimes, enums, frozen dataclasses, DataFrames) exactly and fast, and a
method added to `Store` is served without writing a codec for its types. The price is that both
ends must run compatible tradelib code; the handshake compares protocol versions, and an answer
that does not unpickle becomes a clear error naming the likely cause.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import socket
import stat
import struct
import sys
from contextlib import suppress
from typing import Any

from tradelib.errors import StoreError, TradelibError

PROTOCOL = 1
_HEADER = struct.Struct("!Q")
_MAX_FRAME = 1 << 34  # 16 GiB: anything larger is a corrupt header, not a DataFrame
_SMALL = 1 << 16
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class PeerGone(ConnectionError):
    """The other end closed the connection or stalled in the middle of a message."""


class NotDelivered(ConnectionError):
    """The request could not be written at all: the other end never read any of it."""


class Undecodable(ValueError):
    """A whole frame arrived but does not unpickle (the ends run different tradelib code)."""


def runtime_dir() -> str:
    """The user's private folder of store sockets (the same for every process of the user)."""
    return f"/tmp/tradelib-{os.getuid()}"


def socket_path(db_path: str) -> str:
    """The socket through which the owner of DuckDB file `db_path` serves it."""
    real = os.path.realpath(db_path)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(runtime_dir(), f"{digest}.sock")


def ensure_private_dir(path: str) -> None:
    """Create `path` (mode 0700) or check that it is a folder of ours nobody else can enter."""
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        kind = "folder" if stat.S_ISDIR(info.st_mode) else "non-folder"
        raise StoreError(
            f"{path} is a {kind} owned by uid {info.st_uid} with mode "
            f"{stat.S_IMODE(info.st_mode):04o}; store sockets need a folder of uid {os.getuid()} "
            "with mode 0700. Remove it (or fix its owner and mode) and open the store again"
        )


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a Unix socket; (None, None) off Linux."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # other systems: the 0700 folder and 0600 socket are the only gate
        return None, None
    pid, uid, _gid = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _CRED.size))
    return pid, uid


# -- frames -------------------------------------------------------------------------------------


def encode(message: Any) -> bytes:
    """A message as one frame's payload (pickling errors propagate: nothing was sent)."""
    return pickle.dumps(message, protocol=5)


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Write one frame; NotDelivered if the other end is gone, PeerGone if it stops reading."""
    header = _HEADER.pack(len(payload))
    try:
        if len(payload) <= _SMALL:
            sock.sendall(header + payload)
        else:
            sock.sendall(header)
            sock.sendall(payload)
    except TimeoutError:
        raise PeerGone("the other end stopped reading in the middle of a message") from None
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
        raise NotDelivered(str(exc)) from None
    except OSError as exc:  # e.g. EBADF after close() from another thread
        raise NotDelivered(str(exc)) from None


def send(sock: socket.socket, message: Any) -> None:
    """Pickle and write one message."""
    send_frame(sock, encode(message))


def receive(sock: socket.socket) -> Any:
    """Read one message. TimeoutError only when no byte of it arrived before the timeout."""
    (size,) = _HEADER.unpack(_read(sock, _HEADER.size, idle_ok=True))
    if size > _MAX_FRAME:
        raise PeerGone(f"a frame of {size} bytes is not a message of this protocol")
    return decode(_read(sock, size, idle_ok=False))


def decode(payload: bytes) -> Any:
    """One frame's payload as the message it holds; Undecodable if it does not unpickle."""
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise Undecodable(f"{type(exc).__name__}: {message_of(exc)}") from None


def _read(sock: socket.socket, size: int, idle_ok: bool) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            if idle_ok and got == 0:
                raise
            raise PeerGone("the other end stalled in the middle of a message") from None
        except OSError as exc:
            raise PeerGone(str(exc) or type(exc).__name__) from None
        if n == 0:
            raise PeerGone("the other end closed the connection")
        got += n
    return bytes(buffer)


# -- answers and errors ---------------------------------------------------------------------------


def answer(ok: bool, value: Any) -> bytes:
    """An answer frame's payload; a result that cannot be pickled becomes a clear error."""
    if ok:
        try:
            return encode((True, value))
        except Exception as exc:
            value = describe(
                StoreError(
                    f"the store owner computed the result but cannot send a "
                    f"{type(value).__name__} over the socket ({type(exc).__name__}: "
                    f"{message_of(exc)})"
                )
            )
    return encode((False, value))


def message_of(exc: BaseException) -> str:
    """str(exc), or a stand-in when the exception cannot be printed."""
    try:
        return str(exc)
    except Exception:
        return f"<a {type(exc).__name__} whose message cannot be printed>"


def describe(exc: BaseException) -> dict[str, str]:
    """An exception as plain text fields that always pickle."""
    return {
        "module": type(exc).__module__,
        "name": type(exc).__qualname__,
        "message": message_of(exc),
    }


def rebuild(info: Any) -> TradelibError:
    """The error an answer describes: the same tradelib class, anything else a StoreError."""
    try:
        module, name, message = str(info["module"]), str(info["name"]), str(info["message"])
    except Exception:
        return StoreError(f"the store owner sent an error this process cannot read: {info!r:.200}")
    cls = _tradelib_error(module, name)
    if cls is not None:
        try:
            return cls(message)
        except Exception:  # a constructor that needs more than the message
            pass
    return StoreError(f"{name.rsplit('.', 1)[-1]} in the process that serves the store: {message}")


def _tradelib_error(module: str, name: str) -> type[TradelibError] | None:
    if module != "tradelib" and not module.startswith("tradelib."):
        return None  # never import what a peer names outside tradelib
    loaded = sys.modules.get(module)
    if loaded is None:
        try:
            loaded = importlib.import_module(module)
        except Exception:
            return None
    cls = getattr(loaded, name, None)
    if isinstance(cls, type) and issubclass(cls, TradelibError):
        return cls
    return None
