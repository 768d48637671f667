-- Pro's grace period after a failed payment counts from when the subscription became past_due: Stripe advances
-- current_period_end at the renewal before the charge fails, so counting from the period's end would keep Pro for
-- most of a month instead of a few days.
ALTER TABLE subscriptions ADD COLUMN past_due_since timestamptz;
