-- Security before live money: one-time TOTP codes, API key permission checks, and which
-- master key encrypts each stored API key (so a wrong key or an interrupted rotation is named
-- precisely instead of failing as "cannot decrypt").

-- One row per TOTP secret, identified by a keyed fingerprint (never the secret): the last
-- accepted 30-second step (a code is accepted once) and the wrong-code counter of the
-- rate limit (failures since window_started_at; locked_until while the factor is locked).
CREATE TABLE totp_uses (
    fingerprint VARCHAR(64) PRIMARY KEY,
    last_step BIGINT,
    last_action TEXT,
    last_actor VARCHAR(200),
    last_used_at TIMESTAMPTZ,
    failures INTEGER NOT NULL DEFAULT 0,
    window_started_at TIMESTAMPTZ,
    locked_until TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Every check of a live API key's permissions (withdrawals, spot trading, IP restriction):
-- what the exchange reported, the problems found and whether trading was allowed.
CREATE SEQUENCE key_checks_id_seq;
CREATE TABLE key_checks (
    id BIGINT PRIMARY KEY DEFAULT nextval('key_checks_id_seq'),
    exchange VARCHAR(50) NOT NULL,
    label VARCHAR(100) NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR(200) NOT NULL,
    verdict VARCHAR(20) NOT NULL CHECK (verdict IN ('safe', 'refused', 'overridden')),
    restrictions {json} NOT NULL,
    problems {json} NOT NULL,
    override_reason TEXT
);
CREATE INDEX key_checks_lookup ON key_checks (exchange, label, checked_at);

-- Id of the master key each API key pair is encrypted under (NULL: stored before 0003).
ALTER TABLE api_keys ADD COLUMN key_id VARCHAR(32);
