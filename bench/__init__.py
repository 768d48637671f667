"""Benchmarks, run with `tradedesk bench NAME [--json]`. Each measures a baseline in the same run (DESIGN 9)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from core.config import Settings
from core.errors import SetupError

BenchFn = Callable[[Settings, bool, Callable[[str], None]], "BenchResult"]


class BenchResult:
    def __init__(self, name: str, results: dict[str, Any], params: dict[str, Any], table: list[tuple[str, str]]):
        self.name, self.results, self.params, self.table = name, results, params, table


def _registry() -> dict[str, BenchFn]:
    from bench.alerts import bench_alerts
    from bench.commands import bench_commands
    from bench.dispatch import bench_dispatch
    from bench.feed import bench_feed
    from bench.live import bench_live
    from bench.matching import bench_matching
    from bench.orders import bench_orders
    from bench.planner import bench_planner
    from bench.rls import bench_rls
    from bench.webhooks import bench_webhooks

    return {
        "alerts": bench_alerts,
        "commands": bench_commands,
        "dispatch": bench_dispatch,
        "feed": bench_feed,
        "live": bench_live,
        "matching": bench_matching,
        "orders": bench_orders,
        "planner": bench_planner,
        "rls": bench_rls,
        "webhooks": bench_webhooks,
    }


def run_bench(settings: Settings, name: str | None, *, as_json: bool, quick: bool) -> None:
    benches = _registry()
    if name is None:
        print("benchmarks: " + ", ".join(sorted(benches)))
        return
    if name not in benches:
        raise SetupError(f"no benchmark named {name!r}; available: {', '.join(sorted(benches))}")

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    result = benches[name](settings, quick, progress)
    if as_json:
        print(json.dumps({"bench": result.name, "results": result.results, "params": result.params}))
        return
    width = max(len(k) for k, _ in result.table)
    print(f"bench {result.name}")
    for key, value in result.table:
        print(f"  {key.ljust(width)}  {value}")
