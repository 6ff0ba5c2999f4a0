"""Settings shared by every test: the run never touches the user's own tradelib state.

The state directory (XDG_STATE_HOME) holds the default DuckDB store, the audit key and the
audit anchor files; tests get a fresh one per session so they neither read nor leave anything
in ~/.local/state/tradelib. Tests that need their own state directory set XDG_STATE_HOME again.
No test reads or writes the machine's real OS keyring either: tests that need one install the
in-memory backend (`tradelib.testing.memory_keyring`); child processes inherit the variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")


@pytest.fixture(autouse=True, scope="session")
def _isolated_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = before


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """An in-process keyring for one test (TRADELIB_MASTER_KEY unset, so it is asked)."""
    import keyring

    from tradelib.secrets import MASTER_KEY_ENV
    from tradelib.testing.memory_keyring import MemoryKeyring

    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)
