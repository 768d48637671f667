-- Global reference data: instruments, last prices and 1-minute bars. No user_id: read-only to tradedesk_user,
-- written by the worker's feed (system). Instruments are seeded by the migration that brings the market feed.
--
-- Symbols use one canonical scheme: US equities by ticker (AAPL, BRK.B), crypto as BASE-QUOTE (BTC-USD, BTC-USDT;
-- USDT is not USD). Provider adapters map their own names through provider_symbols.

CREATE TABLE instruments (
    symbol            text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9]{1,10}([.][A-Z]{1,2})?(-[A-Z0-9]{2,10})?$'),
    name              text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    asset_class       text NOT NULL CHECK (asset_class IN ('equity', 'etf', 'crypto')),
    quote_currency    text NOT NULL CHECK (quote_currency ~ '^[A-Z0-9]{3,5}$'),
    tick_size         numeric(28, 10) NOT NULL CHECK (tick_size > 0),
    lot_size          numeric(28, 10) NOT NULL CHECK (lot_size > 0),
    trading_session   text NOT NULL CHECK (trading_session IN ('always', 'us_equity')),
    provider_symbols  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(provider_symbols) = 'object'),
    active            boolean NOT NULL DEFAULT true,
    CHECK ((asset_class = 'crypto') = (symbol LIKE '%-%'))
);
GRANT SELECT ON instruments TO tradedesk_user;

CREATE TABLE last_prices (
    symbol       text PRIMARY KEY REFERENCES instruments ON DELETE CASCADE,
    price        numeric(28, 10) NOT NULL CHECK (price > 0),
    bid          numeric(28, 10) CHECK (bid > 0),
    ask          numeric(28, 10) CHECK (ask > 0),
    size         numeric(28, 10) CHECK (size >= 0),
    ts           timestamptz NOT NULL,
    source       text NOT NULL CHECK (source IN ('sim', 'binance', 'coinbase', 'alpaca', 'finnhub')),
    received_at  timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON last_prices TO tradedesk_user;

CREATE TABLE price_bars (
    symbol      text NOT NULL REFERENCES instruments ON DELETE CASCADE,
    minute      timestamptz NOT NULL,
    open        numeric(28, 10) NOT NULL CHECK (open > 0),
    high        numeric(28, 10) NOT NULL,
    low         numeric(28, 10) NOT NULL CHECK (low > 0),
    close       numeric(28, 10) NOT NULL CHECK (close > 0),
    volume      numeric(28, 10) NOT NULL DEFAULT 0 CHECK (volume >= 0),
    tick_count  integer NOT NULL DEFAULT 0 CHECK (tick_count >= 0),
    source      text NOT NULL CHECK (source IN ('sim', 'binance', 'coinbase', 'alpaca', 'finnhub')),
    PRIMARY KEY (symbol, minute),
    CHECK (low <= open AND low <= close AND high >= open AND high >= close)
);
GRANT SELECT ON price_bars TO tradedesk_user;
