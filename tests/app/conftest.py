from tests.core.orders.conftest import broker, clock, market, trader  # noqa: F401 -- shared fixtures
