"""Usage of the model: recorded per call (tokens) and per question (the plan's daily allowance). Nothing commits.

Free has a hard daily cap on AI questions; Pro has an included amount per day and then a soft cap: questions beyond
it are still answered, and the billing issue reports the overage to Stripe's meter from these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.billing.entitlements import GIVES_PRO, PAST_DUE_GRACE, Entitlements, entitlements
from core.db.database import Scope, scope_connection
from core.errors import EntitlementRequired


@dataclass(frozen=True)
class Allowance:
    plan: str
    used_today: int
    included: int
    overage: bool  # Pro past its included amount: answered, and reported as metered usage


def _day_start(now: datetime, zone_name: str) -> datetime:
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.combine(now.astimezone(zone).date(), time(0), zone)


async def check_ai_allowance(scope: Scope, now: datetime) -> Allowance:
    """Whether the scoped user may ask the model one more question today; EntitlementRequired when Free is used up."""
    conn = await scope_connection(scope)
    plan: Entitlements = await entitlements(conn)
    zone = await conn.fetchval("SELECT timezone FROM users") or "UTC"
    used: int = await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM usage_events WHERE kind = 'ai_question' AND occurred_at >= $1",
        _day_start(now, zone),
    )
    if used >= plan.ai_questions_per_day and plan.plan == "free":
        raise EntitlementRequired(
            f"You've used today's {plan.ai_questions_per_day} AI questions on the free plan. Slash commands keep "
            "working; the allowance resets at midnight in your time zone, and Pro includes more."
        )
    return Allowance(plan.plan, used, plan.ai_questions_per_day, overage=used >= plan.ai_questions_per_day)


async def record_question(scope: Scope) -> None:
    conn = await scope_connection(scope)
    await conn.execute(
        "INSERT INTO usage_events (user_id, kind) VALUES (nullif(current_setting('app.user_id', true), '')::uuid,"
        " 'ai_question')"
    )


async def record_model_call(scope: Scope, model: str, prompt_tokens: int, completion_tokens: int) -> None:
    conn = await scope_connection(scope)
    await conn.execute(
        "INSERT INTO usage_events (user_id, kind, model, prompt_tokens, completion_tokens)"
        " VALUES (nullif(current_setting('app.user_id', true), '')::uuid, 'model_call', $1, $2, $3)",
        model[:100],
        max(0, prompt_tokens),
        max(0, completion_tokens),
    )


@dataclass(frozen=True)
class Overage:
    usage_event_id: int
    customer_id: str
    quantity: int
    occurred_at: datetime

    @property
    def identifier(self) -> str:
        """The meter event's identifier: the same usage event is counted once however often it is reported."""
        return f"tradedesk-usage-{self.usage_event_id}"


# Unreported AI questions of the last two days, numbered within their user's day (in the user's time zone). Pro
# users' questions beyond the included amount are overage to report; everything else needs no report.
_UNREPORTED = """
WITH recent AS (
    SELECT e.id, e.user_id, e.quantity, e.occurred_at, e.reported_at,
           sum(e.quantity) OVER (PARTITION BY e.user_id, (e.occurred_at AT TIME ZONE z.name)::date
                                 ORDER BY e.id) AS running
      FROM usage_events e JOIN users u ON u.id = e.user_id
      -- A time zone Postgres doesn't know (users set their own) counts as UTC rather than failing everyone's report.
      CROSS JOIN LATERAL (
          SELECT coalesce((SELECT name FROM pg_timezone_names WHERE name = u.timezone), 'UTC') AS name
      ) z
     WHERE e.kind = 'ai_question' AND e.occurred_at >= $1::timestamptz - interval '2 days'
)
SELECT r.id, r.quantity, r.occurred_at, r.running, bc.stripe_customer_id,
       EXISTS (SELECT 1 FROM subscriptions WHERE user_id = r.user_id AND {gives_pro}) AS pro
  FROM recent r LEFT JOIN billing_customers bc ON bc.user_id = r.user_id
 WHERE r.reported_at IS NULL
 ORDER BY r.id
 LIMIT $2
""".format(gives_pro=GIVES_PRO.format(now="$1::timestamptz", grace="$3::interval"))


async def overage_to_report(scope: Scope, now: datetime, *, included: int, limit: int = 500) -> list[Overage]:
    """Pro questions beyond the day's included amount, not yet reported; marks the rest as needing no report (the
    metering job's system_scope). The caller reports them, then `mark_reported`."""
    conn = await scope_connection(scope)
    rows = await conn.fetch(_UNREPORTED, now, limit, PAST_DUE_GRACE)
    overage = [
        Overage(r["id"], r["stripe_customer_id"], r["quantity"], r["occurred_at"])
        for r in rows
        if r["pro"] and r["stripe_customer_id"] and r["running"] > included
    ]
    chosen = {o.usage_event_id for o in overage}
    nothing_to_report = [r["id"] for r in rows if r["id"] not in chosen]
    await mark_reported(conn, nothing_to_report, now)
    return overage


async def mark_reported(scope: Scope, ids: list[int], now: datetime) -> None:
    if ids:
        conn = await scope_connection(scope)
        await conn.execute("UPDATE usage_events SET reported_at = $2 WHERE id = ANY($1::bigint[])", ids, now)
