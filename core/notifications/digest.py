"""The daily digest: for each user who asked for one, once a day at their local time, a short summary through the
outbox (so mute and quiet hours apply to it like to any other message).

One statement for all due users, run by the scheduler in system_scope; the dedupe key carries the user's local date,
so running it again, or from two workers, changes nothing.
"""

from __future__ import annotations

from datetime import datetime, time

from sqlmodel.ext.asyncio.session import AsyncSession

from core.db.database import Scope, raw_connection, scope_connection
from core.live import notify_live

_ENQUEUE = """
WITH valid AS MATERIALIZED (
    -- Materialized, so no AT TIME ZONE below runs before the filter: one user's unknown zone (which AT TIME ZONE
    -- rejects with an error) must not stop everyone else's digest.
    SELECT u.id, u.timezone, u.digest_time
      FROM users u JOIN pg_timezone_names z ON z.name = u.timezone
     WHERE u.digest_time IS NOT NULL AND u.deleted_at IS NULL
), due AS (
    SELECT u.id, (($1::timestamptz) AT TIME ZONE u.timezone)::date AS local_date,
           date_trunc('day', ($1::timestamptz) AT TIME ZONE u.timezone) AT TIME ZONE u.timezone AS day_start
      FROM valid u
     WHERE (($1::timestamptz) AT TIME ZONE u.timezone)::time >= u.digest_time
), summary AS (
    SELECT d.id, d.local_date,
           (SELECT coalesce(sum(pf.cash), 0) FROM portfolios pf WHERE pf.user_id = d.id AND pf.archived_at IS NULL)
           + (SELECT coalesce(sum(p.qty * lp.price), 0) FROM positions p
                JOIN portfolios pf ON pf.id = p.portfolio_id AND pf.archived_at IS NULL
                LEFT JOIN last_prices lp ON lp.symbol = p.symbol WHERE p.user_id = d.id) AS equity,
           (SELECT count(*) FROM alerts a WHERE a.user_id = d.id AND a.last_triggered_at >= d.day_start) AS fired,
           (SELECT count(*) FROM fills f WHERE f.user_id = d.id AND f.executed_at >= d.day_start) AS fills,
           (SELECT count(*) FROM orders o WHERE o.user_id = d.id AND o.status IN ('new', 'partially_filled')) AS open
      FROM due d
)
INSERT INTO notifications (user_id, kind, dedupe_key, title, body)
SELECT id, 'system', 'digest:' || local_date, 'Your TradeDesk digest for ' || to_char(local_date, 'FMDay FMDD Mon'),
       format('Equity across your paper portfolios: $%s at the last prices. Today: %s alert(s) fired, %s fill(s); '
              '%s open order(s).',
              to_char(td_round_to(equity, 0.01), 'FM999,999,999,990.00'), fired, fills, open)
  FROM summary
ON CONFLICT (user_id, dedupe_key) DO NOTHING
RETURNING user_id
"""


async def enqueue_digests(session: AsyncSession, now: datetime) -> int:
    """Write today's digest for every user whose digest time has passed (system_scope). Returns how many."""
    conn = await raw_connection(session)
    users = [r["user_id"] for r in await conn.fetch(_ENQUEUE, now)]
    await notify_live(session, dict.fromkeys(users, ("inbox",)))  # one NOTIFY (per 7 kB) for the whole batch
    return len(users)


async def set_digest_time(scope: Scope, at: time | None) -> None:
    """Ask for (or stop) the daily digest, at `at` in the user's own timezone (user_scope)."""
    conn = await scope_connection(scope)
    await conn.execute("UPDATE users SET digest_time = $1, updated_at = now()", at)
