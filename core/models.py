"""Every table's SQLModel class, imported in one place so `SQLModel.metadata` is complete.

The migrations are the schema's source of truth; tests/core/db/test_models.py proves these classes agree with them.
"""

from __future__ import annotations

from sqlmodel import SQLModel

from core.alerts.models import Alert
from core.auth.models import LoginToken, WebSession
from core.billing.models import BillingCustomer, StripeEvent, Subscription, UsageEvent
from core.conversations.models import Conversation, Message
from core.market.models import Instrument, LastPrice, PriceBar
from core.notifications.models import Notification
from core.orders.models import Fill, Order, OrderProposal
from core.portfolio.models import CashLedgerEntry, EquitySnapshot, Portfolio, Position
from core.users.models import AppState, AuditEntry, User

metadata = SQLModel.metadata

__all__ = [
    "Alert",
    "AppState",
    "AuditEntry",
    "BillingCustomer",
    "CashLedgerEntry",
    "Conversation",
    "EquitySnapshot",
    "Fill",
    "Instrument",
    "LastPrice",
    "LoginToken",
    "Message",
    "Notification",
    "Order",
    "OrderProposal",
    "Portfolio",
    "Position",
    "PriceBar",
    "StripeEvent",
    "Subscription",
    "UsageEvent",
    "User",
    "WebSession",
    "metadata",
]
