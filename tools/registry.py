"""Running a tool call: validate the arguments, call the handler, and always return JSON for the model.

The OpenAI tool schemas are built by langchain-core from the argument models (`convert_to_openai_tool`), and the
same models validate what comes back. Whatever goes wrong the model can act on — unknown tool, arguments that don't
parse or validate, a DomainError (unknown symbol, not enough buying power, ...) — returns `{"ok": false, "error":
code, "message": ...}` as the tool result. Anything else is our bug: logged with a reference, and the model is told
only that the tool failed.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from core import metrics
from core.errors import DomainError
from tools.catalog import BY_NAME, TOOLS, JsonDict
from tools.context import ToolContext

log = logging.getLogger("tradedesk.tools")


def openai_tools() -> list[dict[str, Any]]:
    """The Chat Completions `tools` parameter for every tool."""
    return [convert_to_openai_tool(tool.args) for tool in TOOLS]


@dataclass(frozen=True)
class ToolResult:
    name: str
    args: JsonDict  # as parsed (empty when they didn't parse)
    result: JsonDict

    @property
    def ok(self) -> bool:
        return bool(self.result.get("ok", False))

    def content(self) -> str:
        """The tool message's content: compact JSON."""
        return json.dumps(self.result, separators=(",", ":"), ensure_ascii=False)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


async def run_tool(ctx: ToolContext, name: str, arguments: str | JsonDict) -> ToolResult:
    """Run one tool call for `ctx.user_id`; `arguments` is the model's JSON text (or an already-parsed dict).

    Timed into tradedesk_tool_duration_seconds by tool (a name the model made up counts as "other") and outcome."""
    started = time.perf_counter()
    result = await _run(ctx, name, arguments)
    metrics.TOOL_LATENCY.labels(name if name in BY_NAME else "other", "ok" if result.ok else "error").observe(
        time.perf_counter() - started
    )
    return result


async def _run(ctx: ToolContext, name: str, arguments: str | JsonDict) -> ToolResult:
    tool = BY_NAME.get(name)
    if tool is None:
        known = ", ".join(BY_NAME)
        return ToolResult(
            name, {}, {"ok": False, "error": "unknown_tool", "message": f"No tool {name!r}: use {known}."}
        )
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return ToolResult(name, {}, {"ok": False, "error": "invalid_arguments", "message": f"Not JSON: {exc.msg}."})
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        return ToolResult(
            name, {}, {"ok": False, "error": "invalid_arguments", "message": "Arguments must be an object."}
        )
    try:
        args = tool.args.model_validate(parsed)
    except ValidationError as exc:
        return ToolResult(
            name, parsed, {"ok": False, "error": "invalid_arguments", "message": _validation_message(exc)}
        )
    try:
        result = await tool.handler(ctx, args)
    except DomainError as exc:
        return ToolResult(name, parsed, {"ok": False, "error": exc.code, "message": exc.message})
    except Exception:
        reference = secrets.token_hex(4)
        log.exception("tool %s failed (reference %s)", name, reference)
        return ToolResult(
            name, parsed, {"ok": False, "error": "internal", "message": f"The tool failed ({reference})."}
        )
    return ToolResult(name, args.model_dump(exclude_none=True), {"ok": True} | result)
