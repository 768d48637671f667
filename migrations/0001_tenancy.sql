-- Users, app state and the audit log; the conventions every later migration follows.
--
-- Tenancy: every table holding a user's data has user_id (users: id), an index leading with it, RLS enabled AND
-- forced (the owner is subject to it too), and exactly two policies: tradedesk_user sees and writes only rows of
-- app.user_id; tradedesk_system sees all. tradedesk_user gets privileges table by table, in the migration that creates
-- the table, never through default privileges (a table added without policies must not become readable).
-- tradedesk_system, used only by named cross-tenant jobs, gets DML on every table through default privileges.
-- Child tables reference their parent by (user_id, id): a row can't point at another user's portfolio or order,
-- even by a guessed id (foreign-key checks don't go through RLS).

ALTER DEFAULT PRIVILEGES IN SCHEMA tradedesk GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tradedesk_system;
ALTER DEFAULT PRIVILEGES IN SCHEMA tradedesk GRANT USAGE, SELECT ON SEQUENCES TO tradedesk_system;
GRANT USAGE ON SCHEMA tradedesk TO tradedesk_user, tradedesk_system;

-- The two tenant policies, applied the same way to every table keyed on user_id. Migrations call it right after
-- CREATE TABLE; it is not callable by the app roles.
CREATE FUNCTION enable_tenant_rls(p_table regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text := p_table::text;
    me text := '(SELECT nullif(current_setting(''app.user_id'', true), '''')::uuid)';
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY %I ON %s TO tradedesk_user USING (user_id = %s) WITH CHECK (user_id = %s)',
                   t || '_self', t, me, me);
    EXECUTE format('CREATE POLICY %I ON %s TO tradedesk_system USING (true) WITH CHECK (true)', t || '_system', t);
END
$$;
REVOKE ALL ON FUNCTION enable_tenant_rls(regclass) FROM PUBLIC;

CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    discord_id          bigint UNIQUE CHECK (discord_id > 0),
    console_handle      text UNIQUE CHECK (console_handle ~ '^[a-z0-9][a-z0-9_.-]{0,31}$'),
    display_name        text CHECK (char_length(display_name) <= 100),
    timezone            text NOT NULL DEFAULT 'UTC' CHECK (char_length(timezone) BETWEEN 1 AND 64),
    display_currency    text NOT NULL DEFAULT 'USD' CHECK (display_currency ~ '^[A-Z]{3}$'),
    alerts_muted_until  timestamptz,
    quiet_hours_start   time,
    quiet_hours_end     time,
    dm_status           text NOT NULL DEFAULT 'unknown' CHECK (dm_status IN ('unknown', 'open', 'closed')),
    dm_channel_id       bigint CHECK (dm_channel_id > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL))
);
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_self ON users TO tradedesk_user
    USING (id = (SELECT nullif(current_setting('app.user_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.user_id', true), '')::uuid));
CREATE POLICY users_system ON users TO tradedesk_system USING (true) WITH CHECK (true);
-- Users are created only by resolve_identity (system); they change their own preferences, not their identity.
GRANT SELECT ON users TO tradedesk_user;
GRANT UPDATE (display_name, timezone, display_currency, alerts_muted_until, quiet_hours_start, quiet_hours_end,
              updated_at) ON users TO tradedesk_user;

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    actor       text NOT NULL CHECK (char_length(actor) BETWEEN 1 AND 64),
    action      text NOT NULL CHECK (char_length(action) BETWEEN 1 AND 64),
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_user_created ON audit_log (user_id, created_at DESC);
SELECT enable_tenant_rls('audit_log');
GRANT SELECT ON audit_log TO tradedesk_user;

-- A user's own actions are audited through this function, never by a direct INSERT: it takes the user from the
-- scope, so an audit row can't be written for, or forged by, anyone else. It runs as tradedesk_system (its owner).
CREATE FUNCTION record_audit(p_action text, p_detail jsonb DEFAULT '{}'::jsonb) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = tradedesk, pg_catalog, pg_temp
AS $$
    INSERT INTO audit_log (user_id, actor, action, detail)
    VALUES (nullif(current_setting('app.user_id', true), '')::uuid, 'user', p_action, coalesce(p_detail, '{}'::jsonb))
    RETURNING id
$$;
-- A new owner needs CREATE on the schema at the moment of the change only.
GRANT CREATE ON SCHEMA tradedesk TO tradedesk_system;
ALTER FUNCTION record_audit(text, jsonb) OWNER TO tradedesk_system;
REVOKE CREATE ON SCHEMA tradedesk FROM tradedesk_system;
REVOKE ALL ON FUNCTION record_audit(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION record_audit(text, jsonb) TO tradedesk_user;

-- Small key-value state of the deployment (e.g. the hash of the last Discord command registration).
CREATE TABLE app_state (
    key         text PRIMARY KEY CHECK (char_length(key) BETWEEN 1 AND 200),
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
