"""Entitlements: what a user's plan allows. The one function every transport and service asks (DESIGN section 5).

Until billing lands, a user is on "pro" while they have an active or trialing subscription row, and on "free"
otherwise. The row is read under the caller's scope: under user_scope, RLS shows only that user's subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.db.database import Scope, scope_connection

_ACTIVE_PLAN = (
    "SELECT plan FROM subscriptions WHERE status IN ('active', 'trialing')"
    " AND user_id = nullif(current_setting('app.user_id', true), '')::uuid ORDER BY created_at DESC LIMIT 1"
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
    plan = await conn.fetchval(_ACTIVE_PLAN)
    return PLANS.get(plan, FREE) if plan is not None else FREE
