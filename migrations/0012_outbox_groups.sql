-- Outbox groups and leases: a coalesced burst is persisted when it is claimed, so a re-claim after a crash re-sends
-- exactly the same rows under the same nonce (the leader's id), and an outcome is recorded only by the lease holder.
ALTER TABLE notifications
    ADD COLUMN group_id bigint,
    ADD COLUMN lease_token uuid,
    ADD FOREIGN KEY (user_id, group_id) REFERENCES notifications (user_id, id) ON DELETE SET NULL (group_id);
CREATE INDEX notifications_pending_group ON notifications (group_id) WHERE status = 'pending' AND group_id IS NOT NULL;
