-- Price alerts and the notification outbox.

CREATE TABLE alerts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    symbol              text NOT NULL REFERENCES instruments,
    direction           text NOT NULL CHECK (direction IN ('above', 'below')),
    -- 'percent' alerts are turned into a threshold at creation; reference_price and percent say how.
    kind                text NOT NULL CHECK (kind IN ('price', 'percent')),
    threshold           numeric(28, 10) NOT NULL CHECK (threshold > 0),
    reference_price     numeric(28, 10) CHECK (reference_price > 0),
    percent             numeric(9, 4) CHECK (percent <> 0 AND percent > -100 AND percent <= 10000),
    recurring           boolean NOT NULL DEFAULT false,
    cooldown_seconds    integer NOT NULL DEFAULT 0 CHECK (cooldown_seconds BETWEEN 0 AND 2592000),
    expires_at          timestamptz,
    note                text CHECK (char_length(note) <= 300),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'triggered', 'expired')),
    rearm_at            timestamptz,
    trigger_count       integer NOT NULL DEFAULT 0 CHECK (trigger_count >= 0),
    last_triggered_at   timestamptz,
    last_trigger_price  numeric(28, 10) CHECK (last_trigger_price > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, id),
    CHECK ((kind = 'percent') = (reference_price IS NOT NULL AND percent IS NOT NULL)),
    CHECK (kind = 'percent' OR (reference_price IS NULL AND percent IS NULL)),
    CHECK (recurring OR cooldown_seconds = 0),
    CHECK (status <> 'triggered' OR NOT recurring),
    CHECK ((trigger_count > 0) = (last_triggered_at IS NOT NULL))
);
CREATE INDEX alerts_user_created ON alerts (user_id, created_at DESC);
CREATE INDEX alerts_active_by_symbol ON alerts (symbol) WHERE status = 'active';
SELECT enable_tenant_rls('alerts');
GRANT SELECT, DELETE ON alerts TO tradedesk_user;
GRANT INSERT (user_id, symbol, direction, kind, threshold, reference_price, percent, recurring, cooldown_seconds,
              expires_at, note) ON alerts TO tradedesk_user;
GRANT UPDATE (note, expires_at, updated_at) ON alerts TO tradedesk_user;

-- The transactional outbox: written in the transaction that causes it, delivered later by the dispatcher.
-- The id is a bigint because it doubles as Discord's message nonce (at most 25 characters).
CREATE TABLE notifications (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('alert', 'fill', 'order', 'billing', 'system')),
    dedupe_key          text NOT NULL CHECK (char_length(dedupe_key) BETWEEN 1 AND 200),
    title               text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 256),
    body                text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
    payload             jsonb NOT NULL DEFAULT '{}'::jsonb,
    alert_id            uuid,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'coalesced')),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text CHECK (char_length(last_error) <= 1000),
    coalesced_into      bigint,
    discord_message_id  bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    read_at             timestamptz,
    UNIQUE (user_id, id),
    UNIQUE (user_id, dedupe_key),
    FOREIGN KEY (user_id, alert_id) REFERENCES alerts (user_id, id) ON DELETE SET NULL (alert_id),
    FOREIGN KEY (user_id, coalesced_into) REFERENCES notifications (user_id, id) ON DELETE SET NULL (coalesced_into),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    CHECK (coalesced_into IS NULL OR status = 'coalesced')
);
CREATE INDEX notifications_user_created ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
SELECT enable_tenant_rls('notifications');
GRANT SELECT ON notifications TO tradedesk_user;
GRANT UPDATE (read_at) ON notifications TO tradedesk_user;
