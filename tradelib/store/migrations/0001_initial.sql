-- Seed tables (column names and NUMERIC(20,8) kept from the plan) plus tradelib's own tables.
-- Rendered per backend by tradelib.store.migrations: {json} is JSONB on PostgreSQL and JSON on
-- DuckDB, {blob} is BYTEA / BLOB; blocks between "-- @postgresql" and "-- @end" run on
-- PostgreSQL only. Ids come from sequences because both backends support them the same way.
-- Foreign keys exist on PostgreSQL only: DuckDB (2.0) refuses to UPDATE a row that another
-- table references once both were written in the same transaction ("Violates foreign key
-- constraint ... still referenced"), which is exactly an order and its position. On DuckDB
-- the store enforces the references in code (strategy ids come from ensure_strategy,
-- position ids are checked by insert_order).

CREATE SEQUENCE trading_strategies_id_seq;
CREATE TABLE trading_strategies (
    id BIGINT PRIMARY KEY DEFAULT nextval('trading_strategies_id_seq'),
    name VARCHAR(100) NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    parameters {json} NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE SEQUENCE live_positions_id_seq;
CREATE TABLE live_positions (
    id BIGINT PRIMARY KEY DEFAULT nextval('live_positions_id_seq'),
    strategy_id BIGINT NOT NULL,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(4) NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity NUMERIC(20, 8) NOT NULL,
    entry_price NUMERIC(20, 8) NOT NULL,
    current_price NUMERIC(20, 8),
    unrealized_pnl NUMERIC(20, 8),
    realized_pnl NUMERIC(20, 8) NOT NULL DEFAULT 0,
    stop_loss NUMERIC(20, 8),
    take_profit NUMERIC(20, 8),
    status VARCHAR(10) NOT NULL CHECK (status IN ('open', 'partial', 'closed')),
    opened_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ,
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    fees NUMERIC(20, 8) NOT NULL DEFAULT 0,
    trailing_stop NUMERIC(20, 8),
    high_water NUMERIC(20, 8),
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX live_positions_lookup ON live_positions (mode, strategy_id, exchange, symbol, status);

CREATE SEQUENCE live_orders_id_seq;
CREATE TABLE live_orders (
    id BIGINT PRIMARY KEY DEFAULT nextval('live_orders_id_seq'),
    strategy_id BIGINT NOT NULL,
    position_id BIGINT,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(4) NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type VARCHAR(10) NOT NULL CHECK (order_type IN ('market', 'limit')),
    quantity NUMERIC(20, 8) NOT NULL,
    price NUMERIC(20, 8),
    status VARCHAR(20) NOT NULL CHECK (
        status IN ('pending', 'open', 'partially_filled', 'filled', 'cancelled', 'rejected', 'expired')
    ),
    exchange_order_id VARCHAR(100),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    filled_at TIMESTAMPTZ,
    client_order_id VARCHAR(64) NOT NULL UNIQUE,
    filled_quantity NUMERIC(20, 8) NOT NULL DEFAULT 0,
    average_price NUMERIC(20, 8),
    fee NUMERIC(20, 8) NOT NULL DEFAULT 0,
    fee_currency VARCHAR(20),
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    time_in_force VARCHAR(3) NOT NULL DEFAULT 'GTC',
    reduce_only BOOLEAN NOT NULL DEFAULT FALSE,
    reason TEXT,
    intent {json}
);
CREATE INDEX live_orders_status ON live_orders (mode, status);

CREATE SEQUENCE order_fills_id_seq;
CREATE TABLE order_fills (
    id BIGINT PRIMARY KEY DEFAULT nextval('order_fills_id_seq'),
    trade_id VARCHAR(100) NOT NULL,
    exchange VARCHAR(50) NOT NULL,
    client_order_id VARCHAR(64) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    side VARCHAR(4) NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity NUMERIC(20, 8) NOT NULL,
    price NUMERIC(20, 8) NOT NULL,
    fee NUMERIC(20, 8) NOT NULL DEFAULT 0,
    fee_currency VARCHAR(20) NOT NULL DEFAULT '',
    is_maker BOOLEAN NOT NULL DEFAULT FALSE,
    executed_at TIMESTAMPTZ NOT NULL,
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    UNIQUE (trade_id, exchange)
);
CREATE INDEX order_fills_order ON order_fills (client_order_id);

-- One row per (strategy, mode): the seed had strategy_id unique; paper and live runs of one
-- strategy must not share loss streaks and P&L, so mode joins the key.
CREATE SEQUENCE strategy_execution_state_id_seq;
CREATE TABLE strategy_execution_state (
    id BIGINT PRIMARY KEY DEFAULT nextval('strategy_execution_state_id_seq'),
    strategy_id BIGINT NOT NULL,
    mode VARCHAR(5) NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    is_running BOOLEAN NOT NULL DEFAULT FALSE,
    last_execution TIMESTAMPTZ,
    total_trades INTEGER NOT NULL DEFAULT 0,
    winning_trades INTEGER NOT NULL DEFAULT 0,
    losing_trades INTEGER NOT NULL DEFAULT 0,
    consecutive_losses INTEGER NOT NULL DEFAULT 0,
    total_pnl NUMERIC(20, 8) NOT NULL DEFAULT 0,
    daily_pnl NUMERIC(20, 8) NOT NULL DEFAULT 0,
    daily_pnl_date DATE,
    peak_equity NUMERIC(20, 8),
    max_drawdown NUMERIC(20, 8) NOT NULL DEFAULT 0,
    sharpe_ratio NUMERIC(20, 8),
    state {json} NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (strategy_id, mode)
);

CREATE SEQUENCE account_balances_id_seq;
CREATE TABLE account_balances (
    id BIGINT PRIMARY KEY DEFAULT nextval('account_balances_id_seq'),
    exchange VARCHAR(50) NOT NULL,
    asset VARCHAR(20) NOT NULL,
    free NUMERIC(20, 8) NOT NULL,
    locked NUMERIC(20, 8) NOT NULL DEFAULT 0,
    total NUMERIC(20, 8) NOT NULL,
    usd_value NUMERIC(20, 8),
    mode VARCHAR(5) NOT NULL CHECK (mode IN ('paper', 'live')),
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (mode, exchange, asset)
);

-- Volume gets 30 digits: a meme coin trades more than 10^12 units an hour.
CREATE TABLE candles (
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(50) NOT NULL,
    timeframe VARCHAR(10) NOT NULL,
    open_time TIMESTAMPTZ NOT NULL,
    open NUMERIC(20, 8) NOT NULL,
    high NUMERIC(20, 8) NOT NULL,
    low NUMERIC(20, 8) NOT NULL,
    close NUMERIC(20, 8) NOT NULL,
    volume NUMERIC(30, 8) NOT NULL,
    PRIMARY KEY (exchange, symbol, timeframe, open_time)
);

CREATE SEQUENCE events_id_seq;
CREATE TABLE events (
    id BIGINT PRIMARY KEY DEFAULT nextval('events_id_seq'),
    "at" TIMESTAMPTZ NOT NULL,
    kind VARCHAR(100) NOT NULL,
    source VARCHAR(100) NOT NULL DEFAULT '',
    payload {json} NOT NULL
);
CREATE INDEX events_kind_at ON events (kind, "at");

CREATE SEQUENCE runs_id_seq;
CREATE TABLE runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('runs_id_seq'),
    name VARCHAR(200) NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status VARCHAR(20) NOT NULL,
    parameters {json} NOT NULL,
    output_path TEXT,
    error TEXT
);

CREATE TABLE controls (
    key VARCHAR(100) PRIMARY KEY,
    value {json} NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by VARCHAR(100) NOT NULL
);

-- Plain JSON (not JSONB) keeps the payload text byte for byte, which a hash chain needs.
CREATE SEQUENCE audit_log_id_seq;
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('audit_log_id_seq'),
    "at" TIMESTAMPTZ NOT NULL,
    actor VARCHAR(100) NOT NULL,
    action VARCHAR(100) NOT NULL,
    payload JSON NOT NULL,
    prev_hash VARCHAR(128) NOT NULL,
    hash VARCHAR(128) NOT NULL UNIQUE
);

CREATE SEQUENCE api_keys_id_seq;
CREATE TABLE api_keys (
    id BIGINT PRIMARY KEY DEFAULT nextval('api_keys_id_seq'),
    exchange VARCHAR(50) NOT NULL,
    label VARCHAR(100) NOT NULL,
    key_ciphertext {blob} NOT NULL,
    key_nonce {blob} NOT NULL,
    secret_ciphertext {blob} NOT NULL,
    secret_nonce {blob} NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (exchange, label)
);

-- @postgresql
ALTER TABLE live_positions ADD CONSTRAINT live_positions_strategy_fk
    FOREIGN KEY (strategy_id) REFERENCES trading_strategies (id);
ALTER TABLE live_orders ADD CONSTRAINT live_orders_strategy_fk
    FOREIGN KEY (strategy_id) REFERENCES trading_strategies (id);
ALTER TABLE live_orders ADD CONSTRAINT live_orders_position_fk
    FOREIGN KEY (position_id) REFERENCES live_positions (id);
ALTER TABLE strategy_execution_state ADD CONSTRAINT strategy_execution_state_strategy_fk
    FOREIGN KEY (strategy_id) REFERENCES trading_strategies (id);
-- One open (or partial) row per position key; DuckDB has no partial indexes, so there the
-- store enforces it in code (its single writing process serialises upserts anyway).
CREATE UNIQUE INDEX live_positions_one_open
    ON live_positions (mode, strategy_id, exchange, symbol) WHERE status <> 'closed';
-- @end
