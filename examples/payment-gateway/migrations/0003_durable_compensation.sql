-- Durable compensation and the subscriptions of seed 2. Portable, as 0001: the same file runs
-- on SQLite and PostgreSQL. SQLite cannot change a CHECK constraint, so `payments` is rebuilt
-- with its two new states and columns.
--
-- New payment states:
--   cancel_pending  the flow could not record a charge and is refunding it: the intent is
--                   written before the cancel is sent; a worker retries until the PG confirms.
--   manual_review   the PG's record cannot be settled by a rule (a partial cancel, an amount
--                   that differs): someone must look.
-- prepared_at: when the confirm was sent (the database's clock), for the PG's confirm window.
-- verified_at: when the reconciler found a `done` payment charged at the PG.
CREATE TABLE payments_v3 (
    payment_id    TEXT PRIMARY KEY,
    order_id      TEXT NOT NULL UNIQUE REFERENCES orders (order_id),
    amount        BIGINT NOT NULL CHECK (amount > 0),
    state         TEXT NOT NULL
                  CHECK (state IN ('ready', 'in_progress', 'done', 'failed', 'cancelled',
                                   'unknown', 'cancel_pending', 'manual_review')),
    payment_key   TEXT,
    method        TEXT,
    approve_no    TEXT,
    fail_code     TEXT,
    fail_message  TEXT,
    attempts      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    settled_by    TEXT,
    claimed_by    TEXT,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    prepared_at   BIGINT,
    verified_at   BIGINT
);
INSERT INTO payments_v3 (payment_id, order_id, amount, state, payment_key, method, approve_no,
    fail_code, fail_message, attempts, created_at, updated_at, settled_by, claimed_by,
    claimed_until, prepared_at, verified_at)
SELECT payment_id, order_id, amount, state, payment_key, method, approve_no, fail_code,
    fail_message, attempts, created_at, updated_at, settled_by, claimed_by, claimed_until,
    NULL, NULL
FROM payments;
DROP TABLE payments;
ALTER TABLE payments_v3 RENAME TO payments;
CREATE INDEX payments_by_state ON payments (state, updated_at);

-- Seed 2: a subscription is charged once per period with the customer's billing key.
-- paid_periods: periods charged and saved; next_charge_at: when the next one is due (Unix ms).
CREATE TABLE subscriptions (
    subscription_id TEXT PRIMARY KEY,
    customer_key    TEXT NOT NULL,
    billing_key     TEXT NOT NULL,
    name            TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    period_ms       BIGINT NOT NULL CHECK (period_ms > 0),
    paid_periods    BIGINT NOT NULL DEFAULT 0,
    next_charge_at  BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('active', 'cancelled')),
    claimed_by      TEXT,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX subscriptions_due ON subscriptions (state, next_charge_at);

-- Each attempt to charge a period, written before the charge is sent (its order id is the
-- PG's order id, its idempotency key is derived from it):
--   charging        sent, or about to be: the outcome is not recorded yet
--   paid            charged and saved with the period (the subscription's paid_periods)
--   refund_pending  charged, not saved: the refund is under way
--   refunded        charged, not saved, given back
--   failed          not charged
--   manual_review   someone must look
CREATE TABLE subscription_charges (
    order_id        TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (subscription_id),
    period          BIGINT NOT NULL,
    attempt         BIGINT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    state           TEXT NOT NULL
                    CHECK (state IN ('charging', 'paid', 'refund_pending', 'refunded', 'failed',
                                     'manual_review')),
    payment_key     TEXT,
    detail          TEXT,
    settled_by      TEXT,
    claimed_by      TEXT,
    claimed_until   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (subscription_id, period, attempt)
);
CREATE INDEX subscription_charges_by_state ON subscription_charges (state, updated_at);
