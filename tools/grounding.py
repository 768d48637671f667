"""The grounding guard: a reply about the user's money may only state numbers the tools returned in that turn.

Every number in the reply must equal a number found in the turn's tool results (or in what the user wrote), or be
derivable from one by rounding to the reply's precision (210.456 may be said as 210.46 or 210; 1234.5 as "1,234.50")
or by dropping its sign ("a loss of $20" for -20.00). Numbers are compared as exact decimals. Counts of the lists a
tool returned ("3 positions") are allowed too. Anything else is ungrounded: the agent regenerates the reply once and
then falls back to a plain rendering of the tool results (tools/agent.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

# A number as people write it: optional sign and currency, thousands separators, decimals, an optional percent sign.
_NUMBER = re.compile(r"(?<![\w.])[-+−]?\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+−]?\$?\d+(?:\.\d+)?")
_DIGITS = re.compile(r"\d+")
_MONEY_WORDS = re.compile(
    r"\$|\b(price|portfolio|position|p&l|pnl|profit|loss|equity|cash|worth|value|cost|gain|down|up)\b", re.I
)


def numbers_in(text: str) -> list[Decimal]:
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group(0).replace(",", "").replace("$", "").replace("−", "-").lstrip("+")
        try:
            found.append(Decimal(raw))
        except InvalidOperation:
            continue
    return found


def _walk(value: Any, into: set[Decimal]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _walk(item, into)
    elif isinstance(value, list):
        into.add(Decimal(len(value)))
        for item in value:
            _walk(item, into)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float | Decimal):
        into.add(Decimal(str(value)))
    elif isinstance(value, str):
        into.update(numbers_in(value))  # exact decimal strings
        into.update(Decimal(d) for d in _DIGITS.findall(value))  # and the parts of ISO timestamps ("as of 14:05")


def grounded_numbers(results: Iterable[dict[str, Any]], *texts: str) -> set[Decimal]:
    allowed: set[Decimal] = set()
    for result in results:
        _walk(result, allowed)
    for text in texts:
        allowed.update(numbers_in(text))
    return allowed


def _matches(said: Decimal, value: Decimal) -> bool:
    if said == value or said == -value:
        return True
    exponent = said.as_tuple().exponent
    assert isinstance(exponent, int)
    step = Decimal(1).scaleb(exponent)
    for rounding in (ROUND_HALF_EVEN, ROUND_HALF_UP):
        rounded = value.quantize(step, rounding=rounding) if abs(value) < Decimal(10) ** 20 else value
        if said in (rounded, -rounded):
            return True
    return False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    ungrounded: tuple[str, ...] = ()


def about_money(reply: str, money_tools_called: bool) -> bool:
    """Whether the guard applies: a money tool ran this turn, or the reply talks money and has numbers."""
    return money_tools_called or (bool(_MONEY_WORDS.search(reply)) and bool(numbers_in(reply)))


def check_reply(reply: str, results: Iterable[dict[str, Any]], *, user_text: str = "") -> Verdict:
    allowed = grounded_numbers(results, user_text)
    missing = []
    for match in _NUMBER.finditer(reply):
        said = numbers_in(match.group(0))
        if said and not any(_matches(said[0], value) for value in allowed):
            missing.append(match.group(0))
    return Verdict(not missing, tuple(dict.fromkeys(missing)))


def plain_rendering(results: Iterable[dict[str, Any]]) -> str:
    """The tool results as plain lines, exactly as returned: what the user gets when the model can't be trusted."""
    lines = []
    for result in results:
        shown = {k: v for k, v in result.items() if k != "ok" and v is not None}
        lines.append(json.dumps(shown, ensure_ascii=False, separators=(", ", ": ")))
    return "\n".join(lines) if lines else "I couldn't get that from your account data; please ask again."
