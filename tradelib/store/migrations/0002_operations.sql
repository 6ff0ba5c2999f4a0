-- Operating a running engine from other processes: its heartbeat, and the commands a person
-- sends it (close one position, cancel one order) from the dashboard or the CLI.

-- One row per account (mode, exchange): the run lock guarantees one engine per account.
CREATE TABLE engine_heartbeats (
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    exchange VARCHAR(50) NOT NULL,
    strategy VARCHAR(100) NOT NULL,
    state VARCHAR(20) NOT NULL CHECK (
        state IN ('starting', 'running', 'stopping', 'stopped', 'failed')
    ),
    pid INTEGER NOT NULL,
    host VARCHAR(255) NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    beat_at TIMESTAMPTZ NOT NULL,
    last_cycle_at TIMESTAMPTZ,
    cycles BIGINT NOT NULL DEFAULT 0,
    detail {json} NOT NULL,
    PRIMARY KEY (mode, exchange)
);

CREATE SEQUENCE engine_commands_id_seq;
CREATE TABLE engine_commands (
    id BIGINT PRIMARY KEY DEFAULT nextval('engine_commands_id_seq'),
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    exchange VARCHAR(50) NOT NULL,
    kind VARCHAR(50) NOT NULL,
    payload {json} NOT NULL,
    requested_by VARCHAR(100) NOT NULL,
    reason TEXT NOT NULL,
    status VARCHAR(20) NOT NULL CHECK (
        status IN ('pending', 'running', 'done', 'failed', 'refused', 'expired')
    ),
    result {json},
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    claimed_by VARCHAR(100),
    claimed_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX engine_commands_queue ON engine_commands (mode, exchange, status, id);
