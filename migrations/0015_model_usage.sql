-- Every model call records its tokens (issue: usage per user), and the short conversation memory is read newest first.
-- 'model_call' rows carry the tokens of one Chat Completions call; 'ai_question' rows (one per question answered by
-- the model) are what the plan's daily AI-question allowance counts and what the metered Pro price reports.
ALTER TABLE usage_events DROP CONSTRAINT usage_events_kind_check;
ALTER TABLE usage_events ADD CONSTRAINT usage_events_kind_check CHECK (kind IN ('ai_question', 'model_call', 'command'));
ALTER TABLE usage_events
    ADD COLUMN model             text CHECK (char_length(model) <= 100),
    ADD COLUMN prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    ADD COLUMN completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0);
GRANT INSERT (model, prompt_tokens, completion_tokens) ON usage_events TO tradedesk_user;
