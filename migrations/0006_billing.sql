-- Billing: Stripe customers and subscriptions (written by the webhook, system), usage events (AI questions count
-- against the plan) and the processed Stripe events that make the webhook exactly-once.

CREATE TABLE billing_customers (
    user_id             uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    stripe_customer_id  text NOT NULL UNIQUE CHECK (stripe_customer_id ~ '^cus_[A-Za-z0-9]+$'),
    livemode            boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now()
);
SELECT enable_tenant_rls('billing_customers');
GRANT SELECT ON billing_customers TO tradedesk_user;

CREATE TABLE subscriptions (
    id                    text PRIMARY KEY CHECK (id ~ '^sub_[A-Za-z0-9]+$'),
    user_id               uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    stripe_customer_id    text NOT NULL,
    plan                  text NOT NULL CHECK (plan IN ('pro')),
    status                text NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing', 'active',
                                                          'past_due', 'canceled', 'unpaid', 'paused')),
    price_id              text,
    current_period_end    timestamptz,
    trial_end             timestamptz,
    cancel_at_period_end  boolean NOT NULL DEFAULT false,
    canceled_at           timestamptz,
    ended_at              timestamptz,
    -- When we last copied Stripe's state; an older snapshot never overwrites a newer one.
    synced_at             timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (stripe_customer_id) REFERENCES billing_customers (stripe_customer_id)
);
CREATE INDEX subscriptions_user ON subscriptions (user_id, created_at DESC);
SELECT enable_tenant_rls('subscriptions');
GRANT SELECT ON subscriptions TO tradedesk_user;

CREATE TABLE usage_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('ai_question', 'command')),
    quantity     integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    -- Set once reported to Stripe's meter; the id doubles as the meter event's idempotent identifier.
    reported_at  timestamptz
);
CREATE INDEX usage_events_user_time ON usage_events (user_id, kind, occurred_at DESC);
CREATE INDEX usage_events_unreported ON usage_events (id) WHERE reported_at IS NULL;
SELECT enable_tenant_rls('usage_events');
GRANT SELECT ON usage_events TO tradedesk_user;
GRANT INSERT (user_id, kind, quantity) ON usage_events TO tradedesk_user;
GRANT USAGE ON SEQUENCE usage_events_id_seq TO tradedesk_user;

-- Stripe events applied, inserted in the same transaction as their effect. Not a tenant table: system only.
CREATE TABLE stripe_events (
    id            text PRIMARY KEY CHECK (id ~ '^evt_[A-Za-z0-9]+$'),
    type          text NOT NULL,
    created       timestamptz NOT NULL,
    livemode      boolean NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
