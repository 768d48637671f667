from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.procs import Runs, kill_leftovers
from tests.core.orders.conftest import broker, clock, market, trader  # noqa: F401 -- shared fixtures


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A TRADEDESK_DATA_DIR of its own (so its own embedded Postgres cluster)."""
    path = tmp_path / "data"
    yield path
    # Whatever happened in the test, no postgres of this data dir outlives it.
    kill_leftovers(path)


@pytest.fixture
def runs(data_dir: Path, tmp_path: Path) -> Iterator[Runs]:
    """Start `tradedesk` processes on `data_dir`; every one is killed when the test ends."""
    runs = Runs(data_dir, tmp_path)
    try:
        yield runs
    finally:
        runs.kill_all()
        kill_leftovers(data_dir)
