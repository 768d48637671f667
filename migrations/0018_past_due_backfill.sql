-- Subscriptions already past due when 0017 added past_due_since: count their grace from their last sync, rather
-- than treating a missing start as "still within the grace period" forever. subscriptions forces RLS, so the
-- backfill runs as tradedesk_system (transaction-local), then the runner's own role again for its bookkeeping.
SET LOCAL ROLE tradedesk_system;
UPDATE subscriptions SET past_due_since = synced_at WHERE status = 'past_due' AND past_due_since IS NULL;
RESET ROLE;
