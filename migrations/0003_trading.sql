-- Paper trading: portfolios, the cash ledger, order proposals, orders, fills, positions and equity snapshots.
-- Tables under a portfolio reach users through (user_id, portfolio_id) -> portfolios -> users: a direct user_id
-- foreign key would add nothing but a check on every write of the order path. Likewise fills and positions take
-- their symbol from an order, which references instruments.
-- Quantities and prices NUMERIC(28,10), money NUMERIC(28,4). Fills, positions, the ledger and snapshots are written
-- only by the broker (system); a user may create proposals and orders and cancel their own orders.

CREATE TABLE portfolios (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 40),
    currency     text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    -- The running balance of cash_ledger, updated in the same transaction as each ledger row.
    cash         numeric(28, 4) NOT NULL DEFAULT 0 CHECK (cash >= 0),
    is_default   boolean NOT NULL DEFAULT false,
    allow_short  boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    archived_at  timestamptz,
    UNIQUE (user_id, id),
    UNIQUE (user_id, name)
);
CREATE UNIQUE INDEX portfolios_one_default ON portfolios (user_id) WHERE is_default;
SELECT enable_tenant_rls('portfolios');
GRANT SELECT ON portfolios TO tradedesk_user;
GRANT INSERT (user_id, name, currency, is_default, allow_short) ON portfolios TO tradedesk_user;
GRANT UPDATE (name, is_default, allow_short, archived_at) ON portfolios TO tradedesk_user;

CREATE TABLE orders (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    portfolio_id     uuid NOT NULL,
    client_order_id  text NOT NULL CHECK (char_length(client_order_id) BETWEEN 1 AND 64),
    proposal_id      uuid,
    symbol           text NOT NULL REFERENCES instruments,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    type             text NOT NULL CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    tif              text NOT NULL CHECK (tif IN ('day', 'gtc', 'ioc')),
    qty              numeric(28, 10) NOT NULL CHECK (qty > 0),
    limit_price      numeric(28, 10) CHECK (limit_price > 0),
    stop_price       numeric(28, 10) CHECK (stop_price > 0),
    status           text NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'partially_filled', 'filled', 'canceled', 'rejected', 'expired')),
    filled_qty       numeric(28, 10) NOT NULL DEFAULT 0 CHECK (filled_qty >= 0 AND filled_qty <= qty),
    avg_fill_price   numeric(28, 10) CHECK (avg_fill_price > 0),
    quote_price      numeric(28, 10) CHECK (quote_price > 0),
    reject_reason    text CHECK (char_length(reject_reason) <= 300),
    expires_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    canceled_at      timestamptz,
    filled_at        timestamptz,
    UNIQUE (user_id, id),
    UNIQUE (user_id, client_order_id),
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE,
    CHECK (CASE type
        WHEN 'market' THEN limit_price IS NULL AND stop_price IS NULL
        WHEN 'limit' THEN limit_price IS NOT NULL AND stop_price IS NULL
        WHEN 'stop' THEN stop_price IS NOT NULL AND limit_price IS NULL
        ELSE limit_price IS NOT NULL AND stop_price IS NOT NULL END),
    CHECK ((status = 'filled') = (filled_qty = qty)),
    CHECK ((filled_qty > 0) = (avg_fill_price IS NOT NULL)),
    CHECK ((status = 'rejected') = (reject_reason IS NOT NULL)),
    CHECK (status <> 'canceled' OR canceled_at IS NOT NULL)
);
CREATE INDEX orders_user_created ON orders (user_id, created_at DESC);
-- One order per confirmed proposal (a double click can't make two); orders placed without one aren't indexed here.
CREATE UNIQUE INDEX orders_one_per_proposal ON orders (proposal_id) WHERE proposal_id IS NOT NULL;
CREATE INDEX orders_open_by_symbol ON orders (symbol) WHERE status IN ('new', 'partially_filled');
SELECT enable_tenant_rls('orders');
GRANT SELECT ON orders TO tradedesk_user;
GRANT INSERT (user_id, portfolio_id, client_order_id, proposal_id, symbol, side, type, tif, qty, limit_price,
              stop_price, status, quote_price, reject_reason, expires_at) ON orders TO tradedesk_user;
GRANT UPDATE (status, canceled_at, updated_at) ON orders TO tradedesk_user;

-- An order or a cancellation the user has been shown but not yet confirmed (by button, never by the model).
CREATE TABLE order_proposals (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    portfolio_id     uuid NOT NULL,
    action           text NOT NULL CHECK (action IN ('place', 'cancel')),
    target_order_id  uuid,
    symbol           text REFERENCES instruments,
    side             text CHECK (side IN ('buy', 'sell')),
    type             text CHECK (type IN ('market', 'limit', 'stop', 'stop_limit')),
    tif              text CHECK (tif IN ('day', 'gtc', 'ioc')),
    qty              numeric(28, 10) CHECK (qty > 0),
    limit_price      numeric(28, 10) CHECK (limit_price > 0),
    stop_price       numeric(28, 10) CHECK (stop_price > 0),
    quote_price      numeric(28, 10) CHECK (quote_price > 0),
    quote_ts         timestamptz,
    origin           text NOT NULL CHECK (origin IN ('command', 'agent', 'web')),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'canceled', 'expired')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    decided_at       timestamptz,
    UNIQUE (user_id, id),
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, target_order_id) REFERENCES orders (user_id, id) ON DELETE CASCADE,
    CHECK (expires_at > created_at),
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK (CASE action
        WHEN 'place' THEN target_order_id IS NULL AND symbol IS NOT NULL AND side IS NOT NULL AND type IS NOT NULL
                          AND tif IS NOT NULL AND qty IS NOT NULL AND quote_price IS NOT NULL AND quote_ts IS NOT NULL
                          AND (CASE type
                                WHEN 'market' THEN limit_price IS NULL AND stop_price IS NULL
                                WHEN 'limit' THEN limit_price IS NOT NULL AND stop_price IS NULL
                                WHEN 'stop' THEN stop_price IS NOT NULL AND limit_price IS NULL
                                ELSE limit_price IS NOT NULL AND stop_price IS NOT NULL END)
        ELSE target_order_id IS NOT NULL AND symbol IS NULL AND side IS NULL AND qty IS NULL END)
);
CREATE INDEX order_proposals_user_created ON order_proposals (user_id, created_at DESC);
SELECT enable_tenant_rls('order_proposals');
GRANT SELECT, INSERT ON order_proposals TO tradedesk_user;
GRANT UPDATE (status, decided_at) ON order_proposals TO tradedesk_user;

ALTER TABLE orders ADD FOREIGN KEY (user_id, proposal_id) REFERENCES order_proposals (user_id, id);

CREATE TABLE fills (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    order_id      uuid NOT NULL,
    portfolio_id  uuid NOT NULL,
    -- 1 for an order's first fill, 2 for its second...: a fill can't be applied twice.
    seq           integer NOT NULL CHECK (seq >= 1),
    symbol        text NOT NULL,
    side          text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty           numeric(28, 10) NOT NULL CHECK (qty > 0),
    price         numeric(28, 10) NOT NULL CHECK (price > 0),
    gross         numeric(28, 4) NOT NULL CHECK (gross >= 0),
    fee           numeric(28, 4) NOT NULL DEFAULT 0 CHECK (fee >= 0),
    executed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, id),
    UNIQUE (order_id, seq),
    FOREIGN KEY (user_id, order_id) REFERENCES orders (user_id, id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE
);
CREATE INDEX fills_user_executed ON fills (user_id, executed_at DESC);
SELECT enable_tenant_rls('fills');
GRANT SELECT ON fills TO tradedesk_user;

-- Every change of a portfolio's cash, with the reason; portfolios.cash is its running sum.
CREATE TABLE cash_ledger (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       uuid NOT NULL,
    portfolio_id  uuid NOT NULL,
    amount        numeric(28, 4) NOT NULL CHECK (amount <> 0 OR kind = 'reset'),
    kind          text NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'trade', 'fee', 'reset')),
    fill_id       uuid UNIQUE,
    note          text CHECK (char_length(note) <= 200),
    created_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, fill_id) REFERENCES fills (user_id, id) ON DELETE CASCADE,
    CHECK ((kind IN ('trade', 'fee')) = (fill_id IS NOT NULL)),
    CHECK (kind <> 'deposit' OR amount > 0),
    CHECK (kind <> 'withdrawal' OR amount < 0)
);
-- A portfolio's ledger in order; RLS adds the user_id, so one index serves users and the per-portfolio sums.
CREATE INDEX cash_ledger_user_portfolio ON cash_ledger (user_id, portfolio_id, id);
SELECT enable_tenant_rls('cash_ledger');
GRANT SELECT ON cash_ledger TO tradedesk_user;

-- Average-cost positions. A row stays at qty 0 after a close so realized P&L keeps its history.
CREATE TABLE positions (
    user_id       uuid NOT NULL,
    portfolio_id  uuid NOT NULL,
    symbol        text NOT NULL,
    qty           numeric(28, 10) NOT NULL,
    avg_cost      numeric(28, 10) NOT NULL CHECK (avg_cost >= 0),
    realized_pnl  numeric(28, 4) NOT NULL DEFAULT 0,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, symbol),
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE,
    CHECK (qty <> 0 OR avg_cost = 0)
);
CREATE INDEX positions_user ON positions (user_id, portfolio_id);
SELECT enable_tenant_rls('positions');
GRANT SELECT ON positions TO tradedesk_user;

CREATE TABLE equity_snapshots (
    user_id          uuid NOT NULL,
    portfolio_id     uuid NOT NULL,
    ts               timestamptz NOT NULL,
    equity           numeric(28, 4) NOT NULL,
    cash             numeric(28, 4) NOT NULL,
    positions_value  numeric(28, 4) NOT NULL,
    realized_pnl     numeric(28, 4) NOT NULL,
    unrealized_pnl   numeric(28, 4) NOT NULL,
    PRIMARY KEY (portfolio_id, ts),
    FOREIGN KEY (user_id, portfolio_id) REFERENCES portfolios (user_id, id) ON DELETE CASCADE,
    CHECK (equity = cash + positions_value)
);
CREATE INDEX equity_snapshots_user_ts ON equity_snapshots (user_id, ts DESC);
SELECT enable_tenant_rls('equity_snapshots');
GRANT SELECT ON equity_snapshots TO tradedesk_user;
