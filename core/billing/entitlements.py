"""Entitlements: what a user's plan allows. The one function every transport and service asks (DESIGN section 5).

A user is on "pro" while a subscription of theirs is trialing or active, or past_due for less than `PAST_DUE_GRACE`
(a card that failed gets a few days to be fixed; counted from when it became past_due); canceled, unpaid,
incomplete or expired subscriptions are "free". The rows are read under the caller's scope: under user_scope, RLS
shows only that user's subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from core.db.database import Scope, scope_connection

PAST_DUE_GRACE = timedelta(days=3)
# The one rule for "this subscription gives Pro now" ($now: the caller's clock, $grace: PAST_DUE_GRACE).
GIVES_PRO = (
    "(status IN ('trialing', 'active') OR (status = 'past_due' AND coalesce(past_due_since, {now}) + {grace} > {now}))"
)
_ACTIVE_PLAN = (
    "SELECT plan FROM subscriptions WHERE user_id = nullif(current_setting('app.user_id', true), '')::uuid AND "
    + GIVES_PRO.format(now="now()", grace="$1")
    + " ORDER BY created_at DESC LIMIT 1"
)
IS_PRO = (
    "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE user_id = $1 AND " + GIVES_PRO.format(now="$2", grace="$3") + ")"
)


@dataclass(frozen=True)
class Entitlements:
    plan: str  # "free" | "pro"
    alert_quota: int  # active alerts at once
    ai_questions_per_day: int
    order_types: frozenset[str]
    recurring_alerts: bool = True


FREE = Entitlements(
    plan="free",
    alert_quota=10,
    ai_questions_per_day=20,
    order_types=frozenset({"market", "limit"}),
)
PRO = Entitlements(
    plan="pro",
    alert_quota=500,
    ai_questions_per_day=500,
    order_types=frozenset({"market", "limit", "stop", "stop_limit"}),
)
PLANS = {"free": FREE, "pro": PRO}


async def entitlements(scope: Scope) -> Entitlements:
    """The entitlements of the user whose scope this is (user_scope or user_connection)."""
    conn = await scope_connection(scope)
    plan = await conn.fetchval(_ACTIVE_PLAN, PAST_DUE_GRACE)
    return PLANS.get(plan, FREE) if plan is not None else FREE
