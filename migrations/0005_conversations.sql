-- The agent's short per-user memory.

CREATE TABLE conversations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel IN ('discord', 'console', 'web')),
    title       text CHECK (char_length(title) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, id)
);
CREATE INDEX conversations_user_updated ON conversations (user_id, updated_at DESC);
SELECT enable_tenant_rls('conversations');
GRANT SELECT, INSERT, DELETE ON conversations TO tradedesk_user;
GRANT UPDATE (title, updated_at) ON conversations TO tradedesk_user;

CREATE TABLE messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    conversation_id  uuid NOT NULL,
    role             text NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content          text NOT NULL CHECK (char_length(content) <= 20000),
    tool_calls       jsonb,
    tool_call_id     text CHECK (char_length(tool_call_id) <= 100),
    token_count      integer NOT NULL DEFAULT 0 CHECK (token_count >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, conversation_id) REFERENCES conversations (user_id, id) ON DELETE CASCADE,
    CHECK ((role = 'tool') = (tool_call_id IS NOT NULL)),
    CHECK (tool_calls IS NULL OR role = 'assistant')
);
CREATE INDEX messages_user_conversation ON messages (user_id, conversation_id, id);
SELECT enable_tenant_rls('messages');
GRANT SELECT, INSERT, DELETE ON messages TO tradedesk_user;
GRANT USAGE ON SEQUENCE messages_id_seq TO tradedesk_user;
