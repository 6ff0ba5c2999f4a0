"""Secrets: API keys encrypted at rest, the master key's sources, one-time TOTP codes.

    box = SecretBox(load_master_key())          # TRADELIB_MASTER_KEY, else the OS keyring
    save_credentials(store, box, Credentials("binance", "main", key, secret), actor="alice")
    creds = load_credentials(store, box, "binance", "main")
    use_totp(store, code, now, "releasing the kill switch", "alice")   # once per code
    rotate(store, actor="alice", now=now, to_keyring=True)              # new master key

Nothing here prints, logs or raises with a secret in it: every value read or decrypted is
registered with `tradelib.logs.register_secret`, so log lines, reprs and reports show ***.
"""

from tradelib.secrets.box import (
    Credentials,
    SecretBox,
    check_key_name,
    decrypt_record,
    known_exchanges,
    load_credentials,
    save_credentials,
)
from tradelib.secrets.rotate import RotationReport, rotate, rotate_master_key
from tradelib.secrets.sources import (
    KEYRING_SERVICE,
    MASTER_KEY_ENTRY,
    MASTER_KEY_ENV,
    NEW_MASTER_KEY_ENV,
    PENDING_MASTER_KEY_ENTRY,
    TOTP_ENTRY,
    TOTP_SECRET_ENV,
    MasterKey,
    generate_master_key,
    keyring_set,
    load_master_key,
    load_totp_secret,
    master_key_from_env,
    parse_master_key,
)
from tradelib.secrets.totp import (
    DEFAULT_POLICY,
    TotpPolicy,
    matching_step,
    new_totp_secret,
    require_totp,
    time_step,
    totp_fingerprint,
    use_totp,
    verify_totp,
)

__all__ = [
    "DEFAULT_POLICY",
    "KEYRING_SERVICE",
    "MASTER_KEY_ENTRY",
    "MASTER_KEY_ENV",
    "NEW_MASTER_KEY_ENV",
    "PENDING_MASTER_KEY_ENTRY",
    "TOTP_ENTRY",
    "TOTP_SECRET_ENV",
    "Credentials",
    "MasterKey",
    "RotationReport",
    "SecretBox",
    "TotpPolicy",
    "check_key_name",
    "decrypt_record",
    "generate_master_key",
    "keyring_set",
    "known_exchanges",
    "load_credentials",
    "load_master_key",
    "load_totp_secret",
    "master_key_from_env",
    "matching_step",
    "new_totp_secret",
    "parse_master_key",
    "require_totp",
    "rotate",
    "rotate_master_key",
    "save_credentials",
    "time_step",
    "totp_fingerprint",
    "use_totp",
    "verify_totp",
]
