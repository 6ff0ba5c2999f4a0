"""An in-memory `keyring` backend for tests and offline rehearsals (no OS keyring needed).

    import keyring
    keyring.set_keyring(MemoryKeyring())      # this process only; values vanish at exit

`fail_on` makes chosen operations raise like a locked or broken OS keyring would.
"""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    """Keeps (service, user) -> password in a dict."""

    priority = 1

    def __init__(self, fail_on: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}
        self.fail_on = set(fail_on)

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.fail_on:
            raise KeyringLocked(f"the test keyring refuses {operation}")

    def get_password(self, service: str, username: str) -> str | None:
        """The stored value, or None."""
        self._maybe_fail("get")
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        """Store a value."""
        self._maybe_fail("set")
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        """Remove a value; PasswordDeleteError when absent (as real backends do)."""
        self._maybe_fail("delete")
        if self.values.pop((service, username), None) is None:
            raise PasswordDeleteError(f"no value for {service}/{username}")
