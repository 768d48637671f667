"""A local fake of OpenAI's Chat Completions API that the real `openai.AsyncOpenAI` client runs against.

Used by the agent's tests (and benchmarks): nothing of openai-python is mocked, the client talks HTTP to this server
exactly as it would to api.openai.com, and every request is recorded so a test can assert what the agent sent.

    async with FakeOpenAI() as ai:
        ai.script(
            tool_calls(call("get_quote", {"symbol": "AAPL"}), call("get_portfolio", {})),
            lambda body: text(f"AAPL is at {json.loads(tool_results(body)[0].content)['price']}"),
        )
        client = AsyncOpenAI(base_url=ai.base_url, api_key=ai.api_key, max_retries=0, timeout=5)
        ...  # run the agent with `client`
        assert ai.requests[1].tool_results[0].tool_call_id == ai.requests[0].response_tool_call_ids[0]
        ai.assert_script_consumed()

A step is what one POST /v1/chat/completions is answered with, served in order: `text(...)`, `tool_calls(...)`,
`error(status, ...)`, `delay(seconds, then=step)`, or a callable `body -> step` (sync or async) computing the reply
from the request's JSON. Requests the real API would refuse before any model runs (bad API key, malformed JSON,
`stream: true`, an assistant `tool_calls` message not followed by a tool message for each id, ...) are answered
with OpenAI's 4xx error body and don't consume a step. A request after the script is exhausted gets a 500 whose
message says so (with `x-should-retry: false`, so a retrying client doesn't hide it) and is counted in
`ai.unscripted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import re
import string
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

from aiohttp import web

from bench.serve import serve

JSON = dict[str, Any]

API_PREFIX = "/v1"
CHAT_COMPLETIONS = "/chat/completions"
SYSTEM_FINGERPRINT = "fp_fake0penai"
# What the real API accepts as a function name.
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ALPHANUM = string.ascii_letters + string.digits

# ------------------------------------------------------------------------------------------------------ steps


@dataclass(frozen=True)
class ToolCall:
    """One tool call the scripted model makes. `arguments` is the JSON *string* OpenAI sends (possibly malformed);
    `id` is generated ("call_" + 24 characters) unless given."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True)
class Text:
    """A final assistant message (`finish_reason` "stop", or "length"/"content_filter" to script a cut-off)."""

    content: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class ToolCalls:
    """An assistant message with (parallel) tool calls; `content` is null unless the model also says something."""

    calls: tuple[ToolCall, ...]
    content: str | None = None


@dataclass(frozen=True)
class Error:
    """An error answer with OpenAI's body `{"error": {"message", "type", "param", "code"}}` and extra headers."""

    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def body(self) -> JSON:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before answering with `then` (to provoke the client's timeout)."""

    seconds: float
    then: Step


StepFn: TypeAlias = "Callable[[JSON], Step | Awaitable[Step]]"
Step: TypeAlias = "Text | ToolCalls | Error | Delay | StepFn"


def text(content: str, *, finish_reason: str = "stop") -> Text:
    """A final assistant message."""
    return Text(content, finish_reason)


def call(name: str, arguments: Mapping[str, Any] | None = None, *, id: str | None = None) -> ToolCall:
    """A tool call whose arguments are serialised as OpenAI does (a JSON string)."""
    return ToolCall(name, json.dumps(dict(arguments or {})), id)


def call_raw(name: str, arguments: str, *, id: str | None = None) -> ToolCall:
    """A tool call with verbatim `arguments`, e.g. malformed JSON: `call_raw("get_quote", '{"symbol": "AA')`."""
    return ToolCall(name, arguments, id)


def tool_calls(*calls: ToolCall, content: str | None = None) -> ToolCalls:
    """An assistant turn calling one or more tools (more than one: parallel tool calls)."""
    if not calls:
        raise ValueError("tool_calls() needs at least one call(...)")
    return ToolCalls(tuple(calls), content)


# OpenAI's (type, code, message) for the statuses a test is likely to script.
_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. "
        "Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error(
    status: int = 500,
    message: str | None = None,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    retry_after_s: float = 1.0,
) -> Error:
    """An OpenAI error answer. Type, code and message default to what OpenAI sends for `status`; a 429 carries
    `retry-after`/`retry-after-ms` (read by openai-python's retry logic) and exhausted `x-ratelimit-*` headers."""
    default_type, default_code, default_message = _ERROR_DEFAULTS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    extra: dict[str, str] = {}
    if status == 429:
        extra = _ratelimit_headers(remaining_requests=0, reset_requests=f"{retry_after_s:g}s") | {
            "retry-after": str(max(1, round(retry_after_s))),
            "retry-after-ms": str(round(retry_after_s * 1000)),
        }
    return Error(
        status=status,
        message=default_message if message is None else message,
        type=default_type if type is None else type,
        param=param,
        code=default_code if code is None and type is None else code,
        headers=extra | dict(headers or {}),
    )


def delay(seconds: float, then: Step | None = None) -> Delay:
    """Answer with `then` (an empty text answer by default) after `seconds`."""
    return Delay(seconds, text("") if then is None else then)


# -------------------------------------------------------------------------------------------- reading requests


@dataclass(frozen=True)
class ToolResult:
    """A `role: "tool"` message the client sent back."""

    tool_call_id: str
    content: str
    index: int  # position in `messages`


def tool_results(body: Mapping[str, Any]) -> list[ToolResult]:
    """Every tool message in a request body, in order (usable from a callable step)."""
    out: list[ToolResult] = []
    for i, message in enumerate(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "tool":
            out.append(ToolResult(str(message.get("tool_call_id")), _content_text(message.get("content")), i))
    return out


def _content_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a content array."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


@dataclass
class RecordedRequest:
    """One request as the fake saw and answered it.

    `json` is the parsed body (None when absent or not JSON), `headers` the request headers with lower-case names,
    `received_at` time.monotonic() on arrival; `status`, `response` and `response_headers` are what the fake
    answered; `step` is the index of the script step served (None if no step was consumed); `client_gone` is True
    when the client had disconnected (e.g. timed out) before the answer was written.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float
    status: int = 0
    response: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)
    step: int | None = None
    client_gone: bool = False

    @property
    def body(self) -> JSON:
        return self.json if isinstance(self.json, dict) else {}

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def messages(self) -> list[JSON]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tools(self) -> list[JSON]:
        tools = self.body.get("tools")
        return tools if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        return [str((t.get("function") or {}).get("name")) for t in self.tools if isinstance(t, dict)]

    @property
    def tool_choice(self) -> Any:
        return self.body.get("tool_choice")

    @property
    def parallel_tool_calls(self) -> bool | None:
        value = self.body.get("parallel_tool_calls")
        return value if isinstance(value, bool) else None

    @property
    def system_prompt(self) -> str | None:
        """The text of the first system (or developer) message, if any."""
        for message in self.messages:
            if message.get("role") in ("system", "developer"):
                return _content_text(message.get("content"))
        return None

    @property
    def last_user_message(self) -> str | None:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return None

    @property
    def tool_results(self) -> list[ToolResult]:
        return tool_results(self.body)

    @property
    def transcript(self) -> str:
        """Every message's text, tool-call arguments and tool results, joined: for "X never reached the model"."""
        parts: list[str] = []
        for message in self.messages:
            parts.append(_content_text(message.get("content")))
            for tc in message.get("tool_calls") or []:
                function = tc.get("function") or {}
                parts.append(f"{function.get('name')} {function.get('arguments')}")
        return "\n".join(parts)

    @property
    def response_message(self) -> JSON | None:
        """The assistant message the fake answered with (None for an error)."""
        if isinstance(self.response, dict) and self.response.get("choices"):
            message: JSON = self.response["choices"][0]["message"]
            return message
        return None

    @property
    def response_tool_call_ids(self) -> list[str]:
        message = self.response_message or {}
        return [str(tc["id"]) for tc in message.get("tool_calls") or []]


class _Refusal(Exception):
    """Raised while handling a request to answer with an error and consume no step."""

    def __init__(self, err: Error) -> None:
        super().__init__(err.message)
        self.error = err


def _invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> _Refusal:
    return _Refusal(Error(status, message, "invalid_request_error", param, code))


def _ratelimit_headers(*, remaining_requests: int = 499, reset_requests: str = "120ms") -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-requests": str(remaining_requests),
        "x-ratelimit-remaining-tokens": "29000" if remaining_requests else "0",
        "x-ratelimit-reset-requests": reset_requests,
        "x-ratelimit-reset-tokens": "2ms" if remaining_requests else reset_requests,
    }


# ------------------------------------------------------------------------------------------------------ server


class FakeOpenAI:
    """A local OpenAI Chat Completions server for the real openai-python client; an async context manager.

    Configuration (constructor arguments, also attributes a test may change while running):
      api_key        the key clients must present (`Authorization: Bearer <key>`); anything else is a 401
      latency_s      artificial delay before every answer
      validate       refuse (400) the request shapes OpenAI refuses: unanswered tool_call ids, orphan tool messages,
                     bad tool names, tool_choice/parallel_tool_calls without tools (True by default)
      seed           seeds the generated ids, so a run is reproducible

    What tests read: `requests` (every request, refused or not), `remaining` (steps not yet served), `unscripted`
    (requests that found the script exhausted), `step_failures` (callable steps that raised).
    """

    def __init__(
        self, *, api_key: str = "sk-fake-openai", latency_s: float = 0.0, validate: bool = True, seed: int = 0
    ) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.validate = validate
        self.requests: list[RecordedRequest] = []
        self.unscripted = 0
        self.step_failures: list[BaseException] = []
        self._steps: deque[Step] = deque()
        self._served = 0
        self._random = random.Random(seed)  # ids, not secrets
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port on 127.0.0.1."""
        self._closing.clear()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown: a delayed step is woken by `_closing`, nothing else should be in flight.
        served = await serve(app, shutdown_timeout=1.0)
        self._runner, self.port = served.runner, served.port

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What to pass as `AsyncOpenAI(base_url=...)` (or OPENAI_BASE_URL): the client appends `chat/completions`."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # ---------------------------------------------------------------------------------------------- script

    def script(self, *steps: Step) -> None:
        """Queue steps; each answers the next POST /v1/chat/completions that isn't refused."""
        self._steps.extend(steps)

    @property
    def remaining(self) -> int:
        return len(self._steps)

    @property
    def completions(self) -> list[RecordedRequest]:
        """The requests that were answered from the script, in order."""
        return [r for r in self.requests if r.step is not None]

    def assert_script_consumed(self) -> None:
        """Fail if steps are left over (the client made fewer calls than scripted) or a request found none."""
        problems = []
        if self._steps:
            problems.append(f"{len(self._steps)} scripted step(s) never requested: {list(self._steps)!r}")
        if self.unscripted:
            problems.append(f"{self.unscripted} request(s) arrived after the script was exhausted")
        if self.step_failures:
            problems.append(f"callable step(s) raised: {self.step_failures!r}")
        if problems:
            raise AssertionError("FakeOpenAI: " + "; ".join(problems))

    # --------------------------------------------------------------------------------------------- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=None,
            received_at=time.monotonic(),
        )
        self.requests.append(recorded)
        status: int
        body: JSON
        headers: dict[str, str] = {}
        try:
            raw = await request.read()
            if raw:
                try:
                    recorded.json = json.loads(raw)
                except ValueError:
                    recorded.json = None
            if self.latency_s > 0:
                await self._sleep(self.latency_s)
            self._check(request, recorded, raw)
            status, body, headers = await self._serve(recorded)
        except _Refusal as refusal:
            status, body, headers = refusal.error.status, refusal.error.body, dict(refusal.error.headers)
        recorded.client_gone = request.transport is None or request.transport.is_closing()
        headers = {"x-request-id": "req_" + self._token(32, hexdigits=True), "openai-version": "2020-10-01"} | headers
        recorded.status, recorded.response, recorded.response_headers = status, body, headers
        # Content-Type exactly application/json, as OpenAI sends it; openai-python parses by Content-Type.
        return web.json_response(body, status=status, headers=headers)

    def _check(self, request: web.Request, recorded: RecordedRequest, raw: bytes) -> None:
        """Refuse what OpenAI refuses before a model runs, with its error bodies."""
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            given = recorded.headers.get("authorization", "")
            shown = given.removeprefix("Bearer ")
            raise _invalid(
                f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
                if given
                else "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key" if given else None,
                status=401,
            )
        if request.path != API_PREFIX + CHAT_COMPLETIONS or request.method != "POST":
            raise _invalid(
                f"Invalid URL ({request.method} {request.path}); FakeOpenAI only serves POST "
                f"{API_PREFIX}{CHAT_COMPLETIONS}",
                status=404,
            )
        body = recorded.json
        if not isinstance(body, dict):
            raise _invalid(
                "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload"
                + ("." if raw else ", but the body was empty.")
            )
        if body.get("stream"):
            raise _invalid(
                "FakeOpenAI doesn't support stream=true: the agent is expected to call chat.completions.create "
                "without streaming.",
                param="stream",
                code="unsupported_value",
            )
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _invalid("you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _invalid(
                "Missing required parameter: 'messages'."
                if messages is None
                else "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                param="messages",
                code="missing_required_parameter" if messages is None else "empty_array",
            )
        if self.validate:
            _validate(body)

    async def _serve(self, recorded: RecordedRequest) -> tuple[int, JSON, dict[str, str]]:
        if not self._steps:
            self.unscripted += 1
            err = Error(
                500,
                f"FakeOpenAI script exhausted: request #{len(self.completions) + self.unscripted} to "
                f"{API_PREFIX}{CHAT_COMPLETIONS} has no scripted step ({self._served} step(s) were scripted and "
                "served). Script one more with ai.script(...) or check why the client called again.",
                "fake_script_exhausted",
                code="script_exhausted",
                headers={"x-should-retry": "false"},
            )
            return err.status, err.body, dict(err.headers)
        step: Step = self._steps.popleft()
        recorded.step = self._served
        self._served += 1
        body = recorded.body
        while True:
            if isinstance(step, Delay):
                await self._sleep(step.seconds)
                step = step.then
            elif isinstance(step, (Text, ToolCalls)):
                return 200, self._completion(body, step), _ratelimit_headers()
            elif isinstance(step, Error):
                return step.status, step.body, dict(step.headers)
            else:
                try:
                    result = step(body)
                    step = await result if inspect.isawaitable(result) else result
                except Exception as exc:  # noqa: BLE001 - a broken test step must fail the test loudly, not hang the client
                    self.step_failures.append(exc)
                    err = Error(
                        500,
                        f"FakeOpenAI: callable step #{recorded.step} raised {exc!r}",
                        "fake_step_failed",
                        headers={"x-should-retry": "false"},
                    )
                    return err.status, err.body, dict(err.headers)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake when the server stops, so a long delay can't hold up the test's teardown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _completion(self, request: JSON, step: Text | ToolCalls) -> JSON:
        message: JSON = {"role": "assistant", "content": None}
        if isinstance(step, Text):
            message["content"] = step.content
            finish_reason = step.finish_reason
        else:
            message["content"] = step.content
            message["tool_calls"] = [
                {
                    "id": c.id or "call_" + self._token(24),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in step.calls
            ]
            finish_reason = "tool_calls"
        message["refusal"] = None
        prompt_tokens = _tokens(
            {k: request.get(k) for k in ("messages", "tools", "response_format") if request.get(k) is not None}
        )
        completion_tokens = _tokens(message)
        return {
            "id": "chatcmpl-" + self._token(29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _token(self, n: int, *, hexdigits: bool = False) -> str:
        alphabet = "0123456789abcdef" if hexdigits else _ALPHANUM
        return "".join(self._random.choice(alphabet) for _ in range(n))


def _tokens(value: Any) -> int:
    """A deterministic, plausible token count: about four characters of JSON per token."""
    return max(1, len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) // 4)


def _validate(body: JSON) -> None:
    """The checks the real API applies to a chat request's shape, with its messages and params."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                raise _invalid(f"Missing required parameter: 'tools[{i}].function'.", param=f"tools[{i}].function")
            name = function.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise _invalid(
                    f"Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that "
                    "matches the pattern '^[a-zA-Z0-9_-]+$'.",
                    param=f"tools[{i}].function.name",
                    code="invalid_value",
                )
    if not tools:
        for param in ("tool_choice", "parallel_tool_calls"):
            if param in body:
                raise _invalid(
                    f"Invalid value for '{param}': '{param}' is only allowed when 'tools' are specified.",
                    param=param,
                )
    pending: dict[str, int] = {}  # tool_call ids awaiting their tool message -> index of the assistant message
    for i, message in enumerate(body["messages"]):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            raise _invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', "
                "and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        assert isinstance(message, dict)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _invalid(
                    f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                    param=f"messages[{i}].tool_call_id",
                    code="missing_required_parameter",
                )
            if call_id not in pending:
                raise _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    f"'tool_calls' (messages[{i}].tool_call_id {call_id!r} answers no pending tool call).",
                    param=f"messages.[{i}].role",
                )
            del pending[call_id]
            continue
        if pending:
            raise _invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
                param=f"messages.[{next(iter(pending.values()))}].role",
            )
        if role == "assistant":
            for tc in message.get("tool_calls") or []:
                if isinstance(tc, dict) and isinstance(tc.get("id"), str):
                    pending[tc["id"]] = i
    if pending:
        raise _invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
            param=f"messages.[{next(iter(pending.values()))}].role",
        )


__all__ = [
    "Delay",
    "Error",
    "FakeOpenAI",
    "RecordedRequest",
    "Step",
    "Text",
    "ToolCall",
    "ToolCalls",
    "ToolResult",
    "call",
    "call_raw",
    "delay",
    "error",
    "text",
    "tool_calls",
    "tool_results",
]
