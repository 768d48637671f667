"""Trading sessions: when an instrument trades, and when its DAY orders expire.

Crypto trades around the clock. US equities trade in regular hours, 09:30-16:00 America/New_York on weekdays
(exchange holidays and early closes come with a maintained calendar later). Under the sim provider every session is
open around the clock so a demo works at any hour; tests that need a closed market pass `always_open=False` and a
clock of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]

NEW_YORK = ZoneInfo("America/New_York")
US_OPEN = time(9, 30)
US_CLOSE = time(16, 0)
ALWAYS = "always"
US_EQUITY = "us_equity"


def utc_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MarketHours:
    """Answers "is it open?" and "when does today's session close?" for a trading_session name."""

    always_open: bool = False
    clock: Clock = field(default=utc_clock)

    def now(self) -> datetime:
        return self.clock()

    def is_open(self, session: str, at: datetime | None = None) -> bool:
        if self.always_open or session == ALWAYS:
            return True
        local = (at or self.now()).astimezone(NEW_YORK)
        return local.weekday() < 5 and US_OPEN <= local.time() < US_CLOSE

    def session_close(self, session: str, at: datetime | None = None) -> datetime | None:
        """When the session that `at` belongs to ends: today's close, or the next one if we're past it.

        None for sessions that never close (a DAY order there lives until the end of the UTC day instead; see
        day_order_expiry).
        """
        if self.always_open or session == ALWAYS:
            return None
        local = (at or self.now()).astimezone(NEW_YORK)
        day = local.date()
        while True:
            close = datetime.combine(day, US_CLOSE, NEW_YORK)
            if day.weekday() < 5 and close > local:
                return close.astimezone(UTC)
            day += timedelta(days=1)

    def day_order_expiry(self, session: str, at: datetime | None = None) -> datetime:
        """When a DAY order placed at `at` expires: its session's close, or midnight UTC where nothing closes."""
        close = self.session_close(session, at)
        if close is not None:
            return close
        moment = (at or self.now()).astimezone(UTC)
        return datetime.combine(moment.date() + timedelta(days=1), time(0), UTC)
