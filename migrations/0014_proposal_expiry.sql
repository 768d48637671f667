-- The scheduler marks pending proposals past their expiry as expired every minute: find them without a scan.
CREATE INDEX order_proposals_pending_expiry ON order_proposals (expires_at) WHERE status = 'pending';
