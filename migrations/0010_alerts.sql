-- The alert engine's write path. Both functions are for the worker (system_scope) only: users create and delete
-- their alerts with plain SQL under user_scope (the grants of 0004 suffice), NOTIFYing 'alerts:<id>' themselves.
--
-- fire_alert marks one alert as triggered and writes its notification in the one statement, so the mark and the
-- outbox row commit together or not at all. It acts only on the alert as the engine last knew it (p_trigger_count):
-- a trigger retried after a crash or a failed transaction finds the count already moved on and does nothing, and the
-- dedupe key alert:<id>:<n> makes a second notification for the same trigger impossible even so.

-- The price the create's already-crossed check used: the engine evaluates a fresh alert as a crossing from it to its
-- own current price, so a tick crossing the level between the create's commit and the engine hearing of it fires.
ALTER TABLE alerts ADD COLUMN checked_price numeric(28, 10) CHECK (checked_price > 0);
GRANT INSERT (checked_price) ON alerts TO tradedesk_user;

CREATE FUNCTION fire_alert(p_alert_id uuid, p_trigger_count integer, p_price numeric, p_at timestamptz)
RETURNS bigint LANGUAGE plpgsql SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    a alerts;
    v_id bigint;
    v_level text;
BEGIN
    UPDATE alerts
       SET trigger_count = trigger_count + 1,
           last_triggered_at = p_at,
           last_trigger_price = p_price,
           status = CASE WHEN recurring THEN 'active' ELSE 'triggered' END,
           rearm_at = CASE WHEN recurring THEN p_at + make_interval(secs => cooldown_seconds) END,
           updated_at = now()
     WHERE id = p_alert_id
       AND status = 'active'
       AND trigger_count = p_trigger_count
       AND (expires_at IS NULL OR expires_at > p_at)
       AND (rearm_at IS NULL OR rearm_at <= p_at)
    RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_level := trim_scale(a.threshold)::text;
    INSERT INTO notifications (user_id, kind, dedupe_key, title, body, payload, alert_id)
    VALUES (
        a.user_id, 'alert', 'alert:' || a.id || ':' || a.trigger_count,
        left(a.symbol || ' ' || a.direction || ' ' || v_level, 256),
        left(a.symbol || ' traded at ' || trim_scale(p_price)::text || ', '
             || CASE a.direction WHEN 'above' THEN 'at or above ' ELSE 'at or below ' END || v_level
             || CASE WHEN a.kind = 'percent'
                     THEN ' (' || trim_scale(a.percent)::text || '% from '
                          || trim_scale(a.reference_price)::text || ')' ELSE '' END
             || '.' || CASE WHEN a.note IS NOT NULL AND a.note <> '' THEN E'\n' || a.note ELSE '' END, 4000),
        jsonb_build_object('alert_id', a.id, 'symbol', a.symbol, 'direction', a.direction, 'kind', a.kind,
                           'threshold', a.threshold, 'price', p_price, 'trigger_count', a.trigger_count,
                           'recurring', a.recurring, 'triggered_at', p_at),
        a.id)
    ON CONFLICT (user_id, dedupe_key) DO NOTHING
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Mark every active alert whose expiry has passed as expired (the scheduler's job). Returns how many.
CREATE FUNCTION expire_alerts(p_now timestamptz) RETURNS integer LANGUAGE plpgsql
SET search_path = tradedesk, pg_catalog, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    UPDATE alerts SET status = 'expired', updated_at = now()
     WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= p_now;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE INDEX alerts_expiring ON alerts (expires_at) WHERE status = 'active' AND expires_at IS NOT NULL;

REVOKE ALL ON FUNCTION fire_alert(uuid, integer, numeric, timestamptz), expire_alerts(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fire_alert(uuid, integer, numeric, timestamptz), expire_alerts(timestamptz)
    TO tradedesk_system;
