-- The head of the keyed audit chain, kept outside audit_log so that deleting rows from the end
-- (or all of them) no longer leaves a chain that verifies. One row (id = 1), rewritten in the
-- same transaction as every append, under the "audit_log" lock. `mac` is an HMAC with the
-- audit key (never stored here), so the anchor cannot be rewritten to fit a shortened log.
CREATE TABLE audit_anchor (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    chain_id VARCHAR(36) NOT NULL,
    key_id VARCHAR(64) NOT NULL,
    legacy_rows BIGINT NOT NULL CHECK (legacy_rows >= 0),
    entries BIGINT NOT NULL CHECK (entries >= 0),
    head_id BIGINT,
    head_hash VARCHAR(128) NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    mac VARCHAR(128) NOT NULL
);
