"""Master key rotation: every stored API key re-encrypted under a new master key, atomically.

The order of the steps is what makes an interruption lose nothing:

1. the new key is made durable first — in the OS keyring under "master-key-next", or by the
   person who put it in TRADELIB_NEW_MASTER_KEY (and their password manager);
2. every row is re-encrypted in ONE store transaction (all rows or none), each row recording
   the id of the key it is now under;
3. only then does the keyring's "master-key" become the new key and "master-key-next" go.

Killed before 2 commits: the rows are still under the old key, which is still in place.
Killed between 2 and 3: the rows are under the new key, which is in "master-key-next" (or
TRADELIB_NEW_MASTER_KEY); running `tradelib secrets rotate` again sees which key each row is
under and finishes. Loading a key meanwhile fails with a message that says exactly this.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from tradelib.audit import AuditLog
from tradelib.errors import SecretError
from tradelib.secrets.box import SecretBox, decrypt_record, encrypt_pair
from tradelib.secrets.sources import (
    MASTER_KEY_ENTRY,
    MASTER_KEY_ENV,
    NEW_MASTER_KEY_ENV,
    PENDING_MASTER_KEY_ENTRY,
    MasterKey,
    env_place,
    generate_master_key,
    keyring_delete,
    keyring_get,
    keyring_place,
    keyring_set,
    load_master_key,
    parse_master_key,
)

if TYPE_CHECKING:
    from tradelib.store import ApiKeyRecord, Store


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What a rotation did: rows re-encrypted now, rows already under the new key, key ids."""

    rotated: int
    already: int
    old_key_id: str
    new_key_id: str
    new_key_source: str
    next_step: str = ""


def rotate_master_key(
    store: Store,
    old: SecretBox,
    new: SecretBox,
    *,
    actor: str,
    now: datetime,
    on_row: Callable[[ApiKeyRecord], None] | None = None,
) -> RotationReport:
    """Re-encrypt every api_keys row from `old` to `new` in one transaction; audited.

    Rows already under `new` (a rotation that stopped after its commit) are left alone. Any row
    that neither key opens stops the rotation before anything is written. `on_row` is called
    after each row is re-encrypted (progress; tests interrupt there).
    """
    if old.key_id == new.key_id:
        raise SecretError(
            f"the new master key (from {new.source}) is the current one (id {old.key_id}): "
            "make a new key with `tradelib secrets new-master-key`"
        )
    rotated = already = 0
    with store.transaction():
        store.lock("api_keys")
        records = store.list_api_keys()
        for record in records:
            if record.key_id == new.key_id:
                already += 1
                continue
            plain = decrypt_record(old, record)  # names the row and the key if it cannot
            store.reencrypt_api_key(record.id, *encrypt_pair(new, plain), key_id=new.key_id)
            rotated += 1
            if on_row is not None:
                on_row(record)
        payload = {
            "rotated": rotated,
            "already": already,
            "old_master_key_id": old.key_id,
            "new_master_key_id": new.key_id,
            "new_key_source": new.source,
        }
        AuditLog(store).record(actor, "master_key_rotated", payload, now)
    return RotationReport(rotated, already, old.key_id, new.key_id, new.source)


def rotate(
    store: Store,
    *,
    actor: str,
    now: datetime,
    to_keyring: bool = False,
    on_row: Callable[[ApiKeyRecord], None] | None = None,
) -> RotationReport:
    """`tradelib secrets rotate`: pick the old and new keys from their sources and rotate.

    The new key comes from TRADELIB_NEW_MASTER_KEY, else (with `to_keyring`, or when the
    current key lives in the keyring) from the keyring's pending entry, made and saved there
    first when absent. See the module docstring for why this order loses nothing.
    """
    old = load_master_key()
    new_raw = os.environ.get(NEW_MASTER_KEY_ENV)
    keyring_flow = not (new_raw and new_raw.strip())
    if keyring_flow:
        if not to_keyring and old.source != keyring_place(MASTER_KEY_ENTRY):
            raise SecretError(
                f"rotate needs the new master key and the current one is in {old.source}: set "
                f"{NEW_MASTER_KEY_ENV} to a key from `tradelib secrets new-master-key` (save it "
                "in your password manager first), or pass --keyring to keep the new key in the "
                "OS keyring. Nothing was changed"
            )
        pending, _ = keyring_get(PENDING_MASTER_KEY_ENTRY)
        if pending is None:
            pending = generate_master_key()
            keyring_set(PENDING_MASTER_KEY_ENTRY, pending)  # durable before any row changes
        new = parse_master_key(pending, keyring_place(PENDING_MASTER_KEY_ENTRY))
    else:
        assert new_raw is not None
        new = parse_master_key(new_raw, env_place(NEW_MASTER_KEY_ENV))
    if old.key_id == new.key_id:  # an earlier run finished everything but the clean-up
        if keyring_flow:
            keyring_delete(PENDING_MASTER_KEY_ENTRY)
        behind = [r for r in store.list_api_keys() if r.key_id not in (None, new.key_id)]
        if behind:
            raise SecretError(
                f"the new master key (from {new.source}) is already the current one, but "
                f"{len(behind)} stored keys are under another master key: nothing was changed"
            )
        done = "" if keyring_flow else f"; remove {NEW_MASTER_KEY_ENV} from the environment"
        return RotationReport(
            0, len(store.list_api_keys()), old.key_id, new.key_id, new.source,
            f"nothing to do: the master key (id {new.key_id}) is already in use{done}",
        )  # fmt: skip
    report = rotate_master_key(
        store, SecretBox(old), SecretBox(new), actor=actor, now=now, on_row=on_row
    )
    return _promote(report, old, new, keyring_flow)


def _promote(
    report: RotationReport, old: MasterKey, new: MasterKey, keyring_flow: bool
) -> RotationReport:
    """Make the new key the one every process loads (keyring), or say how (environment)."""
    if keyring_flow:
        keyring_set(MASTER_KEY_ENTRY, base64.b64encode(new.key).decode())
        keyring_delete(PENDING_MASTER_KEY_ENTRY)
        step = f"the new master key is now in {keyring_place(MASTER_KEY_ENTRY)}"
        if old.source == env_place(MASTER_KEY_ENV):
            step += f"; remove {MASTER_KEY_ENV} from the environment (it holds the old key)"
    else:
        step = (
            f"now set {MASTER_KEY_ENV} to the value of {NEW_MASTER_KEY_ENV} wherever tradelib "
            f"runs, remove {NEW_MASTER_KEY_ENV}, and retire the old key"
        )
    return RotationReport(
        report.rotated, report.already, report.old_key_id, report.new_key_id,
        report.new_key_source, step,
    )  # fmt: skip
