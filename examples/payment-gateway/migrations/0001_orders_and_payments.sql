-- Orders and their payments. Portable SQL: the same file runs on SQLite and PostgreSQL
-- (text keys, BIGINT amounts in won, times as Unix milliseconds).
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    amount     BIGINT NOT NULL CHECK (amount > 0),
    state      TEXT NOT NULL CHECK (state IN ('created', 'paid', 'cancelled')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One payment per order. `state` moves ready -> in_progress -> done | failed | unknown,
-- back to ready when the PG was not called (breaker open), and done | unknown -> cancelled
-- when the charge is given back.
CREATE TABLE payments (
    payment_id   TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL UNIQUE REFERENCES orders (order_id),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    state        TEXT NOT NULL
                 CHECK (state IN ('ready', 'in_progress', 'done', 'failed', 'cancelled', 'unknown')),
    payment_key  TEXT,
    method       TEXT,
    approve_no   TEXT,
    fail_code    TEXT,
    fail_message TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX payments_by_state ON payments (state, updated_at);
