"""Usage of the model: recorded per call (tokens) and per question (the plan's daily allowance). Nothing commits.

Free has a hard daily cap on AI questions; Pro has an included amount per day and then a soft cap: questions beyond
it are still answered, and the billing issue reports the overage to Stripe's meter from these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.billing.entitlements import Entitlements, entitlements
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
