"""`tradedesk bench planner`: the offline planner's accuracy on the labelled utterances, against a naive matcher.

The labelled set is tests/tools/planner_cases.json (DESIGN 9 keeps it under tests/; this bench reads it from the
repository, so it runs from a checkout, which is where benches run). A case is right when the plan's comparable form
(`Plan.describe()`: the tool steps with their exact arguments, or "help" / "clarify") equals the expected one.

The baseline, in the same run, is the naive approach: the first keyword found (in a fixed keyword order) picks the
tool, the first exact ticker or company name is the symbol, the first number the quantity, everything else the tool's
defaults; no keyword is help. `ratio = accuracy / baseline_accuracy`. Both are also scored on the tool names alone.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import BenchResult
from core.config import Settings
from tools.planner import SYMBOL_ALIASES, plan

CASES_PATH = Path(__file__).resolve().parents[1] / "tests" / "tools" / "planner_cases.json"
GOAL_ACCURACY = 0.95

Expected = list[dict[str, Any]] | str


@dataclass(frozen=True)
class Case:
    text: str
    expect: Expected
    label: str  # the text as shown in a report (long ones shortened)


def load_cases(path: Path = CASES_PATH) -> list[Case]:
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = []
    for item in data["cases"]:
        text = item["text"] * int(item.get("repeat", 1))
        label = text if len(text) <= 60 else f"{text[:40]!r}... ({len(text)} chars)"
        cases.append(Case(text, item["expect"], label))
    return cases


def planner_describe(text: str) -> Expected:
    described: Expected = plan(text).describe()
    return described


def tools_of(expected: Expected) -> list[str] | str:
    return expected if isinstance(expected, str) else [step["tool"] for step in expected]


# -- the naive baseline ---------------------------------------------------------------------------------------------

_KEYWORDS: list[tuple[str, str]] = [
    ("buy", "propose_order"),
    ("sell", "propose_order"),
    ("alert", "create_alert"),
    ("order", "list_orders"),
    ("chart", "get_chart"),
    ("plan", "get_plan"),
    ("portfolio", "get_portfolio"),
    ("position", "get_position"),
    ("p&l", "get_pnl"),
    ("pnl", "get_pnl"),
    ("profit", "get_pnl"),
    ("price", "get_quote"),
    ("quote", "get_quote"),
]


def naive_describe(text: str) -> Expected:
    lowered = text.lower()
    found = [(lowered.find(k), tool) for k, tool in _KEYWORDS if k in lowered]
    if not found:
        return "help"
    tool = min(found)[1]
    words = re.findall(r"[a-z]+", lowered)
    symbol = next((SYMBOL_ALIASES[w] for w in words if w in SYMBOL_ALIASES), None)
    if symbol in ("BTC", "ETH"):
        symbol = f"{symbol}-USD"
    number = next(iter(re.findall(r"\d+(?:\.\d+)?", lowered)), None)
    args: dict[str, Any] = {}
    if tool in ("get_quote", "get_position"):
        args = {"symbol": symbol}
    elif tool == "get_chart":
        args = {"target": symbol, "period": "1d"}
    elif tool == "get_pnl":
        args = {"period": "day"}
    elif tool == "list_orders":
        args = {"status": "open"}
    elif tool == "propose_order":
        args = {"symbol": symbol, "side": "buy" if "buy" in lowered else "sell", "qty": number}
    elif tool == "create_alert":
        args = {"symbol": symbol, "condition": "above", "value": number}
    return [{"tool": tool, "args": args}]


# -- the bench ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    accuracy: float
    tool_accuracy: float
    misses: list[dict[str, Any]]
    seconds: float


def score(cases: list[Case], describe: Callable[[str], Expected]) -> Score:
    right = tool_right = 0
    misses: list[dict[str, Any]] = []
    started = time.perf_counter()
    for case in cases:
        got = describe(case.text)
        if got == case.expect:
            right += 1
        else:
            misses.append({"text": case.label, "expected": case.expect, "got": got})
        if tools_of(got) == tools_of(case.expect):
            tool_right += 1
    elapsed = time.perf_counter() - started
    n = len(cases)
    return Score(right / n, tool_right / n, misses, elapsed)


def bench_planner(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    cases = load_cases()
    progress(f"{len(cases)} labelled utterances from {CASES_PATH.relative_to(CASES_PATH.parents[2])}")
    planner = score(cases, planner_describe)
    progress(f"planner: {planner.accuracy:.1%} ({len(planner.misses)} misses)")
    naive = score(cases, naive_describe)
    progress(f"naive keyword matcher: {naive.accuracy:.1%}")
    for miss in planner.misses:
        progress(f"miss: {miss['text']!r}: expected {json.dumps(miss['expected'])}, got {json.dumps(miss['got'])}")
    ratio = planner.accuracy / naive.accuracy if naive.accuracy else None
    results = {
        "accuracy": round(planner.accuracy, 4),
        "n": len(cases),
        "baseline_accuracy": round(naive.accuracy, 4),
        "ratio": round(ratio, 2) if ratio is not None else None,
        "tool_accuracy": round(planner.tool_accuracy, 4),
        "baseline_tool_accuracy": round(naive.tool_accuracy, 4),
        "plans_per_s": round(len(cases) / planner.seconds) if planner.seconds else None,
        "misses": planner.misses,
    }
    params = {
        "cases": str(CASES_PATH.relative_to(CASES_PATH.parents[2])),
        "goal_accuracy": GOAL_ACCURACY,
        "quick": quick,  # the set is small: --quick runs all of it too
    }
    table = [
        ("utterances", str(len(cases))),
        ("accuracy (tool and arguments)", f"{planner.accuracy:.1%}  (goal {GOAL_ACCURACY:.0%})"),
        ("baseline accuracy (naive)", f"{naive.accuracy:.1%}"),
        ("ratio", f"{ratio:.2f}x" if ratio is not None else "n/a"),
        ("tool-only accuracy", f"{planner.tool_accuracy:.1%} (naive {naive.tool_accuracy:.1%})"),
        ("misses", str(len(planner.misses))),
    ]
    table += [(f"  miss {i + 1}", f"{m['text']!r}") for i, m in enumerate(planner.misses)]
    return BenchResult("planner", results, params, table)
