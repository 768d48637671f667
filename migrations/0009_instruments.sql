-- The instrument universe: the US large caps, the index ETF and the crypto pairs the sim streams, and the Binance
-- spot pairs (quoted in USDT, which is not USD: BTC-USDT is not BTC-USD). Tick and lot sizes are the venues' own
-- (US equities trade whole shares here; Binance's BTCUSDT/ETHUSDT step sizes are 0.00001 and 0.0001).
-- provider_symbols maps each provider to its own name for the instrument; a provider streams exactly the active
-- instruments that have an entry for it. instruments has no RLS, so this runs as a plain INSERT; rows that already
-- exist (an operator's, or a test's) are left as they are.

INSERT INTO instruments (symbol, name, asset_class, quote_currency, tick_size, lot_size, trading_session,
                         provider_symbols)
VALUES
    ('AAPL',     'Apple Inc.',                'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "AAPL"}'),
    ('MSFT',     'Microsoft Corporation',     'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "MSFT"}'),
    ('NVDA',     'NVIDIA Corporation',        'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "NVDA"}'),
    ('AMZN',     'Amazon.com, Inc.',          'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "AMZN"}'),
    ('GOOGL',    'Alphabet Inc. (Class A)',   'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "GOOGL"}'),
    ('META',     'Meta Platforms, Inc.',      'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "META"}'),
    ('TSLA',     'Tesla, Inc.',               'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "TSLA"}'),
    ('JPM',      'JPMorgan Chase & Co.',      'equity', 'USD',  0.01, 1,       'us_equity', '{"sim": "JPM"}'),
    ('SPY',      'SPDR S&P 500 ETF Trust',    'etf',    'USD',  0.01, 1,       'us_equity', '{"sim": "SPY"}'),
    ('BTC-USD',  'Bitcoin',                   'crypto', 'USD',  0.01, 0.00001, 'always',    '{"sim": "BTC-USD"}'),
    ('ETH-USD',  'Ether',                     'crypto', 'USD',  0.01, 0.0001,  'always',    '{"sim": "ETH-USD"}'),
    ('BTC-USDT', 'Bitcoin / Tether',          'crypto', 'USDT', 0.01, 0.00001, 'always',    '{"binance": "BTCUSDT"}'),
    ('ETH-USDT', 'Ether / Tether',            'crypto', 'USDT', 0.01, 0.0001,  'always',    '{"binance": "ETHUSDT"}')
ON CONFLICT (symbol) DO NOTHING;
