-- What became of each Stripe event: applied, ignored (a type we don't handle), or unlinked (a customer not linked to
-- a user yet: kept with its payload, not lost). The customer is kept for finding a customer's events.
ALTER TABLE stripe_events
    ADD COLUMN status      text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'ignored', 'unlinked')),
    ADD COLUMN customer_id text CHECK (customer_id ~ '^cus_[A-Za-z0-9]+$'),
    ADD COLUMN payload     jsonb;
CREATE INDEX stripe_events_unlinked ON stripe_events (customer_id) WHERE status = 'unlinked';
