-- The paper broker's write path, in SQL functions, so that an order is one statement after the scope is set
-- (validate, insert, fill, position, ledger, audit) and a user can only reach it through them.
--
-- place_order, cancel_order and the portfolio functions are SECURITY DEFINER owned by tradedesk_system: they take
-- the user from app.user_id (never from an argument) and must filter every query by it themselves, because
-- tradedesk_system's policy sees every tenant. apply_fill and expire_orders are for the worker (system_scope) only.
-- Errors meant for the user are raised with SQLSTATE P0001, a user-safe MESSAGE and the DomainError code in HINT.
--
-- Accounting (average cost, fees in the basis): positions.cost_basis is the cash paid for the open quantity (negative
-- for a short: the cash received). A fill's cash flow is qty x price rounded to the cent, minus/plus the fee. Closing
-- part of a position removes the same fraction of the cost basis; realized P&L is the cash flow of the closing part
-- minus the basis removed. Hence realized + unrealized = cash flows + market value = equity - net deposits, exactly.

ALTER TABLE positions ADD COLUMN cost_basis numeric(28, 4) NOT NULL DEFAULT 0;
ALTER TABLE positions ADD CONSTRAINT positions_flat_has_no_basis CHECK (qty <> 0 OR cost_basis = 0);
ALTER TABLE orders ADD COLUMN triggered_at timestamptz;
ALTER TABLE orders ADD CONSTRAINT orders_trigger_needs_stop CHECK (triggered_at IS NULL OR stop_price IS NOT NULL);

-- Buying power and sellable quantity look at a portfolio's open orders only, however long its history.
CREATE INDEX orders_open_by_portfolio ON orders (portfolio_id, side, symbol) WHERE status IN ('new', 'partially_filled');

-- Writes to orders and portfolios go through the functions below, which validate and audit.
REVOKE INSERT, UPDATE ON orders FROM tradedesk_user;
REVOKE INSERT ON portfolios FROM tradedesk_user;
REVOKE UPDATE ON portfolios FROM tradedesk_user;
GRANT UPDATE (name, is_default, allow_short) ON portfolios TO tradedesk_user;

CREATE FUNCTION td_fail(p_code text, p_message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = p_message, HINT = p_code;
END
$$;

CREATE FUNCTION td_current_user() RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
    v uuid := nullif(current_setting('app.user_id', true), '')::uuid;
BEGIN
    IF v IS NULL THEN
        PERFORM td_fail('not_signed_in', 'No user is signed in for this request.');
    END IF;
    RETURN v;
END
$$;

-- Round to a multiple of p_step, half to even: the app's one rounding rule (SQL's round() goes half away from zero).
-- A single expression, so the planner inlines it.
CREATE FUNCTION td_round_to(p_value numeric, p_step numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN abs(p_value / p_step - trunc(p_value / p_step)) = 0.5 AND trunc(p_value / p_step) % 2 = 0
                THEN trunc(p_value / p_step) ELSE round(p_value / p_step) END * p_step
$$;

-- The average-cost rule, in one place for both fill paths: a position after a fill of p_signed units whose cash flow
-- is p_flow (negative for a buy). Pure computation; the caller has locked and read the position (qty 0 if new).
CREATE FUNCTION td_position_after(p positions, p_signed numeric, p_flow numeric, p_at timestamptz) RETURNS positions
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_closed numeric := 0;
    v_close_flow numeric := 0;
    v_removed numeric := 0;
BEGIN
    IF p.qty <> 0 AND sign(p.qty) <> sign(p_signed) THEN
        v_closed := least(abs(p_signed), abs(p.qty));
        v_close_flow := CASE WHEN v_closed = abs(p_signed) THEN p_flow
                             ELSE td_round_to(p_flow * v_closed / abs(p_signed), 0.0001) END;
        v_removed := CASE WHEN v_closed = abs(p.qty) THEN p.cost_basis
                          ELSE td_round_to(p.cost_basis * v_closed / abs(p.qty), 0.0001) END;
    END IF;
    p.realized_pnl := p.realized_pnl + v_close_flow - v_removed;
    -- What the fill doesn't close opens (or adds to) a position: its cash flow becomes basis.
    p.cost_basis := p.cost_basis - v_removed - (p_flow - v_close_flow);
    IF p.qty = 0 OR sign(p.qty + p_signed) = -sign(p.qty) THEN  -- opened now, or flipped through zero
        p.opened_at := p_at;
    END IF;
    p.qty := p.qty + p_signed;
    IF p.qty = 0 THEN
        p.cost_basis := 0;
    END IF;
    p.avg_cost := CASE WHEN p.qty = 0 THEN 0 ELSE abs(p.cost_basis / p.qty) END;
    p.updated_at := p_at;
    RETURN p;
END
$$;

-- Book one fill of order o: the position as computed, the fill row, cash, its ledger row and the audit trail, in
-- one statement. p_placed (the order.placed audit detail) is set when the order is placed and filled at once.
CREATE FUNCTION td_book_fill(o orders, p positions, p_qty numeric, p_price numeric, p_gross numeric, p_fee numeric,
                             p_flow numeric, p_seq integer, p_at timestamptz, p_placed jsonb)
RETURNS fills LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_fill fills;
BEGIN
    -- plpgsql, not sql: its statement's plan is cached per session instead of planned at every call.
    WITH pos AS (
        INSERT INTO positions (user_id, portfolio_id, symbol, qty, avg_cost, cost_basis, realized_pnl, opened_at,
                               updated_at)
        VALUES (o.user_id, o.portfolio_id, o.symbol, p.qty, p.avg_cost, p.cost_basis, p.realized_pnl, p.opened_at,
                p.updated_at)
        ON CONFLICT (portfolio_id, symbol) DO UPDATE
            SET qty = EXCLUDED.qty, avg_cost = EXCLUDED.avg_cost, cost_basis = EXCLUDED.cost_basis,
                realized_pnl = EXCLUDED.realized_pnl, opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at
    ), f AS (
        INSERT INTO fills (user_id, order_id, portfolio_id, seq, symbol, side, qty, price, gross, fee, executed_at)
        VALUES (o.user_id, o.id, o.portfolio_id, p_seq, o.symbol, o.side, p_qty, p_price, p_gross, p_fee, p_at)
        RETURNING *
    ), cash AS (
        UPDATE portfolios SET cash = cash + p_flow WHERE id = o.portfolio_id
    ), ledger AS (
        INSERT INTO cash_ledger (user_id, portfolio_id, amount, kind, fill_id, created_at)
        SELECT o.user_id, o.portfolio_id, p_flow, 'trade', f.id, p_at FROM f
    ), audit AS (
        INSERT INTO audit_log (user_id, actor, action, detail, created_at)
        SELECT o.user_id, 'user', 'order.placed', p_placed, p_at WHERE p_placed IS NOT NULL
        UNION ALL
        SELECT o.user_id, 'system:broker', 'order.filled',
               jsonb_build_object('order_id', o.id, 'fill_id', f.id, 'qty', p_qty, 'price', p_price, 'fee', p_fee), p_at
          FROM f
    )
    SELECT * INTO v_fill FROM f;
    RETURN v_fill;
END
$$;

-- Apply one fill of a resting order's whole remaining quantity at p_price (the worker's matcher, in system_scope).
-- Returns the fill, or NULL when the order is no longer open (a cancel got there first: exactly one of them wins,
-- serialised on the order's row lock). A fill the portfolio can't pay for any more (the price ran away from the
-- reservation) rejects the order instead.
CREATE FUNCTION apply_fill(p_order_id uuid, p_price numeric, p_at timestamptz, p_fee_bps numeric)
RETURNS fills LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    o orders;
    p positions;
    f fills;
    v_qty numeric;
    v_signed numeric;
    v_gross numeric;
    v_fee numeric;
    v_flow numeric;
    v_cash numeric;
BEGIN
    -- Locks in the same order as every other writer (portfolio, then order), so a reset can't deadlock with us.
    SELECT cash INTO v_cash FROM portfolios WHERE id = (SELECT portfolio_id FROM orders WHERE id = p_order_id)
       FOR UPDATE;
    SELECT * INTO o FROM orders WHERE id = p_order_id FOR UPDATE;
    IF NOT FOUND OR o.status NOT IN ('new', 'partially_filled') THEN
        RETURN NULL;
    END IF;
    v_qty := o.qty - o.filled_qty;
    v_gross := td_round_to(v_qty * p_price, 0.01);
    v_fee := td_round_to(v_gross * p_fee_bps / 10000, 0.01);
    v_signed := CASE o.side WHEN 'buy' THEN v_qty ELSE -v_qty END;
    v_flow := CASE o.side WHEN 'buy' THEN -(v_gross + v_fee) ELSE v_gross - v_fee END;

    IF v_cash + v_flow < 0 THEN
        UPDATE orders SET status = 'rejected', reject_reason = 'Not enough cash to pay for the fill.',
                          updated_at = p_at
         WHERE id = o.id;
        INSERT INTO audit_log (user_id, actor, action, detail)
        VALUES (o.user_id, 'system:broker', 'order.rejected',
                jsonb_build_object('order_id', o.id, 'reason', 'insufficient_cash_at_fill', 'price', p_price));
        RETURN NULL;
    END IF;

    -- No row lock needed: every writer of a position holds its portfolio's lock first (taken above).
    SELECT * INTO p FROM positions WHERE portfolio_id = o.portfolio_id AND symbol = o.symbol;
    IF NOT FOUND THEN
        p := ROW(o.user_id, o.portfolio_id, o.symbol, 0, 0, 0, p_at, p_at, 0)::positions;
    END IF;
    f := td_book_fill(o, td_position_after(p, v_signed, v_flow, p_at), v_qty, p_price, v_gross, v_fee, v_flow,
                      (SELECT count(*)::integer + 1 FROM fills WHERE order_id = o.id), p_at, NULL);
    UPDATE orders SET filled_qty = o.qty,
                      avg_fill_price = (coalesce(o.avg_fill_price, 0) * o.filled_qty + p_price * v_qty) / o.qty,
                      status = 'filled', filled_at = p_at, updated_at = p_at
     WHERE id = o.id;
    RETURN f;
END
$$;

-- A stop-limit order whose stop was hit becomes a limit order. Returns NULL only when the order is no longer open.
CREATE FUNCTION trigger_stop(p_order_id uuid, p_at timestamptz) RETURNS orders
LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    o orders;
BEGIN
    -- Idempotent: an order triggered earlier (whose fill then failed) is returned as it is, still open.
    SELECT * INTO o FROM orders WHERE id = p_order_id AND status IN ('new', 'partially_filled') FOR UPDATE;
    IF FOUND AND o.triggered_at IS NULL THEN
        UPDATE orders SET triggered_at = p_at, updated_at = p_at WHERE id = o.id RETURNING * INTO o;
        INSERT INTO audit_log (user_id, actor, action, detail)
        VALUES (o.user_id, 'system:broker', 'order.triggered', jsonb_build_object('order_id', o.id));
    END IF;
    RETURN o;
END
$$;

-- The user's open portfolio, locked for the rest of the transaction: every writer of a portfolio's cash, positions
-- and orders takes this lock first, which orders them (and keeps them from deadlocking).
CREATE FUNCTION td_lock_portfolio(p_portfolio_id uuid, p_user uuid) RETURNS portfolios
LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    pf portfolios;
BEGIN
    SELECT * INTO pf FROM portfolios WHERE id = p_portfolio_id AND user_id = p_user AND archived_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM td_fail('not_found', 'That portfolio does not exist.');
    END IF;
    RETURN pf;
END
$$;

CREATE FUNCTION td_check_starting_cash(p_cash numeric) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_cash IS NULL OR p_cash < 0 OR p_cash > 100000000 OR p_cash <> round(p_cash, 2) THEN
        PERFORM td_fail('invalid_amount', 'Starting cash must be dollars and cents between $0 and $100,000,000.');
    END IF;
END
$$;

-- Cash held for a portfolio's open buy orders: what each could cost at most (its limit, its stop or the last price
-- plus slippage for orders without a limit), fee included. The one rule for buying power and withdrawals.
CREATE FUNCTION td_reserved_cash(p_portfolio_id uuid, p_fee_bps numeric, p_slippage_bps numeric) RETURNS numeric
LANGUAGE sql STABLE SET search_path = tradedesk, pg_catalog, pg_temp AS $$
    SELECT coalesce(sum((x.qty - x.filled_qty)
                        * coalesce(x.limit_price, coalesce(x.stop_price, xp.price) * (1 + p_slippage_bps / 10000))
                        * (1 + p_fee_bps / 10000)), 0)
      FROM orders x LEFT JOIN last_prices xp ON xp.symbol = x.symbol
     WHERE x.portfolio_id = p_portfolio_id AND x.side = 'buy' AND x.status IN ('new', 'partially_filled')
$$;

CREATE FUNCTION place_order(
    p_portfolio_id uuid, p_client_order_id text, p_symbol text, p_side text, p_type text, p_tif text,
    p_qty numeric, p_limit numeric, p_stop numeric, p_proposal_id uuid,
    p_session_open boolean, p_expires_at timestamptz, p_now timestamptz,
    p_stale_after interval, p_fee_bps numeric, p_slippage_bps numeric
) RETURNS orders LANGUAGE plpgsql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := td_current_user();
    i instruments;
    pf portfolios;
    o orders;
    lp last_prices;
    v_fresh boolean;
    v_ref numeric;
    v_fill_price numeric;
    v_reserved numeric;
    v_held numeric;
    v_open_sells numeric;
    v_marketable boolean := false;
    v_ioc_miss boolean;
    v_placed jsonb;
    v_gross numeric;
    v_fee numeric;
    v_signed numeric;
    v_flow numeric;
    p positions;
BEGIN
    IF p_side NOT IN ('buy', 'sell') THEN
        PERFORM td_fail('invalid_order', 'Side must be buy or sell.');
    END IF;
    IF p_type NOT IN ('market', 'limit', 'stop', 'stop_limit') THEN
        PERFORM td_fail('invalid_order', 'Order type must be market, limit, stop or stop_limit.');
    END IF;
    IF p_tif NOT IN ('day', 'gtc', 'ioc') THEN
        PERFORM td_fail('invalid_order', 'Time in force must be day, gtc or ioc.');
    END IF;
    SELECT * INTO i FROM instruments WHERE symbol = upper(p_symbol) AND active;
    IF NOT FOUND THEN
        PERFORM td_fail('unknown_symbol', format('%s is not a symbol TradeDesk trades.', upper(p_symbol)));
    END IF;
    IF p_qty IS NULL OR p_qty <= 0 THEN
        PERFORM td_fail('invalid_quantity', 'The quantity must be greater than zero.');
    END IF;
    IF p_qty % i.lot_size <> 0 THEN
        PERFORM td_fail('invalid_quantity',
            format('%s trades in multiples of %s.', i.symbol, trim_scale(i.lot_size)));
    END IF;
    IF (p_type IN ('limit', 'stop_limit')) <> (p_limit IS NOT NULL) THEN
        PERFORM td_fail('invalid_order', CASE WHEN p_limit IS NULL THEN 'This order type needs a limit price.'
                                               ELSE 'Only limit and stop-limit orders take a limit price.' END);
    END IF;
    IF (p_type IN ('stop', 'stop_limit')) <> (p_stop IS NOT NULL) THEN
        PERFORM td_fail('invalid_order', CASE WHEN p_stop IS NULL THEN 'This order type needs a stop price.'
                                               ELSE 'Only stop and stop-limit orders take a stop price.' END);
    END IF;
    IF p_limit <= 0 OR p_stop <= 0 THEN
        PERFORM td_fail('invalid_price', 'Prices must be greater than zero.');
    END IF;
    IF p_limit % i.tick_size <> 0 OR p_stop % i.tick_size <> 0 THEN
        PERFORM td_fail('invalid_price',
            format('%s prices move in steps of %s.', i.symbol, trim_scale(i.tick_size)));
    END IF;
    IF p_tif = 'ioc' AND p_type NOT IN ('market', 'limit') THEN
        PERFORM td_fail('invalid_order', 'Immediate-or-cancel is only for market and limit orders.');
    END IF;

    pf := td_lock_portfolio(p_portfolio_id, v_user);

    -- A retried submission returns the first order, whatever it says this time.
    SELECT * INTO o FROM orders WHERE user_id = v_user AND client_order_id = p_client_order_id;
    IF FOUND THEN
        RETURN o;
    END IF;

    IF NOT p_session_open AND p_tif = 'ioc' THEN
        PERFORM td_fail('market_closed',
            format('The %s market is closed; an immediate-or-cancel order can''t wait for the open.', i.symbol));
    END IF;
    SELECT * INTO lp FROM last_prices WHERE symbol = i.symbol;
    v_fresh := FOUND AND lp.ts >= p_now - p_stale_after;
    IF p_session_open AND NOT v_fresh THEN
        PERFORM td_fail('quote_unavailable',
            format('There is no recent price for %s right now; try again in a moment.', i.symbol));
    END IF;
    IF lp.price IS NULL THEN
        PERFORM td_fail('quote_unavailable', format('There is no price for %s yet.', i.symbol));
    END IF;
    IF v_fresh AND p_type IN ('stop', 'stop_limit') THEN
        IF p_side = 'buy' AND p_stop <= lp.price THEN
            PERFORM td_fail('invalid_price', format('A buy stop must be above the current price (%s).',
                            trim_scale(lp.price)));
        ELSIF p_side = 'sell' AND p_stop >= lp.price THEN
            PERFORM td_fail('invalid_price', format('A sell stop must be below the current price (%s).',
                            trim_scale(lp.price)));
        END IF;
    END IF;

    -- The price the order is reserved and checked at: what it will at most pay (buy) or at least get (sell).
    v_ref := CASE p_type WHEN 'market' THEN lp.price * (1 + p_slippage_bps / 10000)
                         WHEN 'stop' THEN p_stop * (1 + p_slippage_bps / 10000)
                         ELSE p_limit END;
    IF p_qty * least(v_ref, lp.price) < 1 THEN
        PERFORM td_fail('invalid_quantity', 'The smallest order TradeDesk takes is worth $1.00.');
    END IF;
    IF p_side = 'buy' THEN
        v_reserved := td_reserved_cash(pf.id, p_fee_bps, p_slippage_bps);  -- pf is the user's, checked above
        IF p_qty * v_ref * (1 + p_fee_bps / 10000) > pf.cash - v_reserved THEN
            PERFORM td_fail('insufficient_buying_power',
                format('Not enough buying power: this order needs about $%s and $%s is available.',
                       to_char(round(p_qty * v_ref * (1 + p_fee_bps / 10000), 2), 'FM999,999,999,990.00'),
                       to_char(greatest(pf.cash - v_reserved, 0), 'FM999,999,999,990.00')));
        END IF;
    ELSIF NOT pf.allow_short THEN
        SELECT coalesce(max(qty), 0) INTO v_held FROM positions WHERE portfolio_id = pf.id AND symbol = i.symbol;
        SELECT coalesce(sum(qty - filled_qty), 0) INTO v_open_sells FROM orders
         WHERE portfolio_id = pf.id AND user_id = v_user AND symbol = i.symbol AND side = 'sell'
           AND status IN ('new', 'partially_filled');
        IF p_qty > v_held - v_open_sells THEN
            PERFORM td_fail('insufficient_position',
                format('You can sell at most %s %s (%s held, %s already in open sell orders).',
                       trim_scale(greatest(v_held - v_open_sells, 0)), i.symbol, trim_scale(v_held),
                       trim_scale(v_open_sells)));
        END IF;
    END IF;

    -- What happens now: a marketable order fills at once (the order is written in its final state, with its
    -- fill, in one statement); an IOC that can't fill is canceled; anything else rests for the worker.
    IF p_session_open AND p_type IN ('market', 'limit') THEN
        v_fill_price := td_round_to(lp.price * (1 + CASE p_side WHEN 'buy' THEN 1 ELSE -1 END
                                                    * p_slippage_bps / 10000), i.tick_size);
        v_marketable := p_type = 'market'
                        OR (p_side = 'buy' AND lp.price <= p_limit) OR (p_side = 'sell' AND lp.price >= p_limit);
        IF v_marketable AND p_type = 'limit' THEN  -- never worse than the limit
            v_fill_price := CASE p_side WHEN 'buy' THEN least(v_fill_price, p_limit)
                                        ELSE greatest(v_fill_price, p_limit) END;
        END IF;
    END IF;
    v_placed := jsonb_build_object('symbol', i.symbol, 'side', p_side, 'type', p_type, 'tif', p_tif, 'qty', p_qty,
                                   'limit', p_limit, 'stop', p_stop, 'quote', lp.price);
    IF v_marketable THEN
        v_gross := td_round_to(p_qty * v_fill_price, 0.01);
        v_fee := td_round_to(v_gross * p_fee_bps / 10000, 0.01);
        v_signed := CASE p_side WHEN 'buy' THEN p_qty ELSE -p_qty END;
        v_flow := CASE p_side WHEN 'buy' THEN -(v_gross + v_fee) ELSE v_gross - v_fee END;
        IF pf.cash + v_flow < 0 THEN  -- the exact cost, after tick rounding and fee
            PERFORM td_fail('insufficient_buying_power',
                format('Not enough cash: this order costs $%s and $%s is available.',
                       to_char(-v_flow, 'FM999,999,999,990.00'), to_char(pf.cash, 'FM999,999,999,990.00')));
        END IF;
        -- No row lock needed: every writer of a position holds its portfolio's lock first.
        SELECT * INTO p FROM positions WHERE portfolio_id = pf.id AND symbol = i.symbol;
        IF NOT FOUND THEN
            p := ROW(v_user, pf.id, i.symbol, 0, 0, 0, p_now, p_now, 0)::positions;
        END IF;
        INSERT INTO orders (user_id, portfolio_id, client_order_id, proposal_id, symbol, side, type, tif, qty,
                            limit_price, stop_price, quote_price, expires_at, created_at, updated_at, status,
                            filled_qty, avg_fill_price, filled_at)
        VALUES (v_user, pf.id, p_client_order_id, p_proposal_id, i.symbol, p_side, p_type, p_tif, p_qty,
                p_limit, p_stop, lp.price, CASE WHEN p_tif = 'day' THEN p_expires_at END, p_now, p_now, 'filled',
                p_qty, v_fill_price, p_now)
        ON CONFLICT (user_id, client_order_id) DO NOTHING
        RETURNING * INTO o;
        IF FOUND THEN
            PERFORM td_book_fill(o, td_position_after(p, v_signed, v_flow, p_now), p_qty, v_fill_price, v_gross,
                                 v_fee, v_flow, 1, p_now, v_placed || jsonb_build_object('order_id', o.id));
        END IF;
    ELSE
        v_ioc_miss := p_session_open AND p_tif = 'ioc';
        INSERT INTO orders (user_id, portfolio_id, client_order_id, proposal_id, symbol, side, type, tif, qty,
                            limit_price, stop_price, quote_price, expires_at, created_at, updated_at, status,
                            canceled_at)
        VALUES (v_user, pf.id, p_client_order_id, p_proposal_id, i.symbol, p_side, p_type, p_tif, p_qty,
                p_limit, p_stop, lp.price, CASE WHEN p_tif = 'day' THEN p_expires_at END, p_now, p_now,
                CASE WHEN v_ioc_miss THEN 'canceled' ELSE 'new' END, CASE WHEN v_ioc_miss THEN p_now END)
        ON CONFLICT (user_id, client_order_id) DO NOTHING
        RETURNING * INTO o;
        IF FOUND THEN
            INSERT INTO audit_log (user_id, actor, action, detail, created_at)
            SELECT v_user, 'user', 'order.placed', v_placed || jsonb_build_object('order_id', o.id), p_now
            UNION ALL
            SELECT v_user, 'system:broker', 'order.canceled',
                   jsonb_build_object('order_id', o.id, 'reason', 'ioc_not_marketable'), p_now
             WHERE v_ioc_miss;
            IF NOT v_ioc_miss THEN
                -- The worker's resting-order index follows this; delivered when (and only if) we commit.
                PERFORM pg_notify('tradedesk_changes', 'orders:' || o.id);
            END IF;
        END IF;
    END IF;
    IF o.id IS NULL THEN  -- the same client_order_id committed by a concurrent submission
        SELECT * INTO o FROM orders WHERE user_id = v_user AND client_order_id = p_client_order_id;
    END IF;
    RETURN o;
END
$$;

CREATE FUNCTION cancel_order(p_order_id uuid, p_now timestamptz) RETURNS orders
LANGUAGE plpgsql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := td_current_user();
    o orders;
BEGIN
    SELECT * INTO o FROM orders WHERE id = p_order_id AND user_id = v_user FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM td_fail('not_found', 'That order does not exist.');
    END IF;
    IF o.status NOT IN ('new', 'partially_filled') THEN
        PERFORM td_fail('order_not_open', format('That order is already %s.', o.status));
    END IF;
    UPDATE orders SET status = 'canceled', canceled_at = p_now, updated_at = p_now WHERE id = o.id
    RETURNING * INTO o;
    INSERT INTO audit_log (user_id, actor, action, detail)
    VALUES (v_user, 'user', 'order.canceled', jsonb_build_object('order_id', o.id));
    PERFORM pg_notify('tradedesk_changes', 'orders:' || o.id);
    RETURN o;
END
$$;

-- DAY orders whose session has closed. For the worker's scheduler (system_scope).
CREATE FUNCTION expire_orders(p_now timestamptz) RETURNS SETOF orders
LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY
    -- Order rows are locked in id order, like reset_portfolio does, so the two can't deadlock.
    WITH due AS (
        SELECT id FROM orders WHERE status IN ('new', 'partially_filled') AND expires_at <= p_now
         ORDER BY id FOR UPDATE
    ), expired AS (
        UPDATE orders SET status = 'expired', updated_at = p_now FROM due WHERE orders.id = due.id
        RETURNING orders.*
    ), audited AS (
        INSERT INTO audit_log (user_id, actor, action, detail)
        SELECT user_id, 'system:scheduler', 'order.expired', jsonb_build_object('order_id', id) FROM expired
    )
    SELECT * FROM expired;
END
$$;

-- Paper cash: open a portfolio with starting cash, deposit, withdraw, reset.
CREATE FUNCTION open_portfolio(p_name text, p_cash numeric, p_allow_short boolean) RETURNS portfolios
LANGUAGE plpgsql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := td_current_user();
    pf portfolios;
BEGIN
    PERFORM td_check_starting_cash(p_cash);
    INSERT INTO portfolios (user_id, name, cash, is_default, allow_short)
    VALUES (v_user, p_name, 0, NOT EXISTS (SELECT 1 FROM portfolios WHERE user_id = v_user AND is_default),
            p_allow_short)
    ON CONFLICT (user_id, name) DO NOTHING
    RETURNING * INTO pf;
    IF NOT FOUND THEN
        PERFORM td_fail('already_exists', format('You already have a portfolio named %s.', p_name));
    END IF;
    IF p_cash > 0 THEN
        UPDATE portfolios SET cash = p_cash WHERE id = pf.id RETURNING * INTO pf;
        INSERT INTO cash_ledger (user_id, portfolio_id, amount, kind, note)
        VALUES (v_user, pf.id, p_cash, 'deposit', 'starting cash');
    END IF;
    INSERT INTO audit_log (user_id, actor, action, detail)
    VALUES (v_user, 'user', 'portfolio.opened', jsonb_build_object('portfolio_id', pf.id, 'cash', p_cash));
    RETURN pf;
END
$$;

CREATE FUNCTION move_cash(p_portfolio_id uuid, p_amount numeric, p_note text, p_fee_bps numeric,
                          p_slippage_bps numeric) RETURNS portfolios
LANGUAGE plpgsql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := td_current_user();
    pf portfolios;
    v_reserved numeric;
BEGIN
    IF p_amount IS NULL OR p_amount = 0 OR abs(p_amount) > 100000000 OR p_amount <> round(p_amount, 2) THEN
        PERFORM td_fail('invalid_amount', 'The amount must be a non-zero number of dollars and cents up to $100,000,000.');
    END IF;
    pf := td_lock_portfolio(p_portfolio_id, v_user);
    IF p_amount < 0 THEN
        v_reserved := td_reserved_cash(pf.id, p_fee_bps, p_slippage_bps);
        IF pf.cash - v_reserved + p_amount < 0 THEN
            PERFORM td_fail('insufficient_cash',
                format('You can withdraw at most $%s (cash not held for open buy orders).',
                       to_char(greatest(pf.cash - v_reserved, 0), 'FM999,999,999,990.00')));
        END IF;
    END IF;
    UPDATE portfolios SET cash = cash + p_amount WHERE id = pf.id RETURNING * INTO pf;
    INSERT INTO cash_ledger (user_id, portfolio_id, amount, kind, note)
    VALUES (v_user, pf.id, p_amount, CASE WHEN p_amount > 0 THEN 'deposit' ELSE 'withdrawal' END, p_note);
    INSERT INTO audit_log (user_id, actor, action, detail)
    VALUES (v_user, 'user', CASE WHEN p_amount > 0 THEN 'portfolio.deposit' ELSE 'portfolio.withdrawal' END,
            jsonb_build_object('portfolio_id', pf.id, 'amount', p_amount));
    RETURN pf;
END
$$;

-- Start a portfolio over: open orders canceled, positions closed out of the books, cash set to p_cash.
-- Fills and the ledger keep their history; the reset itself is a ledger row.
CREATE FUNCTION reset_portfolio(p_portfolio_id uuid, p_cash numeric, p_now timestamptz) RETURNS portfolios
LANGUAGE plpgsql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    v_user uuid := td_current_user();
    pf portfolios;
BEGIN
    PERFORM td_check_starting_cash(p_cash);
    pf := td_lock_portfolio(p_portfolio_id, v_user);
    WITH open AS (
        SELECT id FROM orders WHERE portfolio_id = pf.id AND status IN ('new', 'partially_filled')
         ORDER BY id FOR UPDATE
    ), canceled AS (
        UPDATE orders SET status = 'canceled', canceled_at = p_now, updated_at = p_now FROM open
         WHERE orders.id = open.id
        RETURNING orders.id
    )
    INSERT INTO audit_log (user_id, actor, action, detail)
    SELECT v_user, 'user', 'order.canceled', jsonb_build_object('order_id', id, 'reason', 'portfolio_reset')
      FROM canceled;
    DELETE FROM positions WHERE portfolio_id = pf.id;
    -- Always a ledger row, even for no change of cash: it is where the books start over.
    INSERT INTO cash_ledger (user_id, portfolio_id, amount, kind, note)
    VALUES (v_user, pf.id, p_cash - pf.cash, 'reset', 'portfolio reset');
    UPDATE portfolios SET cash = p_cash WHERE id = pf.id RETURNING * INTO pf;
    INSERT INTO audit_log (user_id, actor, action, detail)
    VALUES (v_user, 'user', 'portfolio.reset', jsonb_build_object('portfolio_id', pf.id, 'cash', p_cash));
    PERFORM pg_notify('tradedesk_changes', 'portfolios:' || pf.id);
    RETURN pf;
END
$$;

-- Ownership and privileges: definer functions run as tradedesk_system; only they are callable by users.
GRANT CREATE ON SCHEMA tradedesk TO tradedesk_system;
ALTER FUNCTION place_order(uuid, text, text, text, text, text, numeric, numeric, numeric, uuid, boolean,
                           timestamptz, timestamptz, interval, numeric, numeric) OWNER TO tradedesk_system;
ALTER FUNCTION cancel_order(uuid, timestamptz) OWNER TO tradedesk_system;
ALTER FUNCTION open_portfolio(text, numeric, boolean) OWNER TO tradedesk_system;
ALTER FUNCTION move_cash(uuid, numeric, text, numeric, numeric) OWNER TO tradedesk_system;
ALTER FUNCTION reset_portfolio(uuid, numeric, timestamptz) OWNER TO tradedesk_system;
REVOKE CREATE ON SCHEMA tradedesk FROM tradedesk_system;

REVOKE ALL ON FUNCTION td_fail(text, text), td_current_user(), td_round_to(numeric, numeric),
    td_lock_portfolio(uuid, uuid), td_check_starting_cash(numeric),
    td_reserved_cash(uuid, numeric, numeric),
    td_position_after(positions, numeric, numeric, timestamptz),
    td_book_fill(orders, positions, numeric, numeric, numeric, numeric, numeric, integer, timestamptz, jsonb),
    apply_fill(uuid, numeric, timestamptz, numeric), trigger_stop(uuid, timestamptz), expire_orders(timestamptz),
    place_order(uuid, text, text, text, text, text, numeric, numeric, numeric, uuid, boolean, timestamptz,
                timestamptz, interval, numeric, numeric),
    cancel_order(uuid, timestamptz), open_portfolio(text, numeric, boolean), move_cash(uuid, numeric, text, numeric, numeric),
    reset_portfolio(uuid, numeric, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION td_fail(text, text), td_current_user(), td_round_to(numeric, numeric),
    td_lock_portfolio(uuid, uuid), td_check_starting_cash(numeric),
    td_reserved_cash(uuid, numeric, numeric),
    td_position_after(positions, numeric, numeric, timestamptz),
    td_book_fill(orders, positions, numeric, numeric, numeric, numeric, numeric, integer, timestamptz, jsonb),
    apply_fill(uuid, numeric, timestamptz, numeric), trigger_stop(uuid, timestamptz), expire_orders(timestamptz)
    TO tradedesk_system;
GRANT EXECUTE ON FUNCTION
    place_order(uuid, text, text, text, text, text, numeric, numeric, numeric, uuid, boolean, timestamptz,
                timestamptz, interval, numeric, numeric),
    cancel_order(uuid, timestamptz), open_portfolio(text, numeric, boolean), move_cash(uuid, numeric, text, numeric, numeric),
    reset_portfolio(uuid, numeric, timestamptz)
    TO tradedesk_user;
