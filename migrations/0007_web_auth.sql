-- Dashboard sign-in: one-time login tokens (from /dashboard) and web sessions. Only hashes are stored.

CREATE TABLE login_tokens (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX login_tokens_user ON login_tokens (user_id, created_at DESC);
SELECT enable_tenant_rls('login_tokens');
-- A user asks for a link for themselves; redeeming it (which must work before we know who it is) is system's job.
GRANT SELECT ON login_tokens TO tradedesk_user;
GRANT INSERT (token_hash, user_id, expires_at) ON login_tokens TO tradedesk_user;

CREATE TABLE web_sessions (
    session_hash  bytea PRIMARY KEY CHECK (octet_length(session_hash) = 32),
    user_id       uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    user_agent    text CHECK (char_length(user_agent) <= 300),
    CHECK (expires_at > created_at)
);
CREATE INDEX web_sessions_user ON web_sessions (user_id, created_at DESC);
SELECT enable_tenant_rls('web_sessions');
GRANT SELECT, DELETE ON web_sessions TO tradedesk_user;
