"""The real `openai.AsyncOpenAI` client against bench.fake_openai: text answers, parallel tool calls, malformed
arguments, OpenAI's error bodies (500, 429, 401, 400), client timeouts, retries, the recorded requests, and the
loud failure of an exhausted script.

Nothing of openai-python is mocked: if these pass, the fake speaks the wire format openai 3.x parses.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from bench.fake_openai import (
    FakeOpenAI,
    call,
    call_raw,
    delay,
    error,
    text,
    tool_calls,
    tool_results,
)

MODEL = "gpt-4o-mini"
SYSTEM = "You are TradeDesk. Every number about the user's money must come from a tool result."

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_quote",
            "description": "The latest price of a symbol.",
            "parameters": {
                "type": "object",
                "properties": {"symbol": {"type": "string"}},
                "required": ["symbol"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_portfolio",
            "description": "The user's positions and cash.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]


@pytest.fixture
async def ai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def client_for(ai: FakeOpenAI, *, timeout: float = 5.0, max_retries: int = 0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=ai.base_url, api_key=ai.api_key, max_retries=max_retries, timeout=timeout)


@pytest.fixture
async def client(ai: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    c = client_for(ai)
    yield c
    await c.close()


def user(content: str) -> list[Any]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


async def test_text_answer_parses_into_a_chat_completion(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(text("Markets are open."))
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    completion = raw.parse()

    assert isinstance(completion, ChatCompletion)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert abs(completion.created - time.time()) < 60
    assert completion.system_fingerprint
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert choice.message.role == "assistant"
    assert choice.message.content == "Markets are open."
    assert choice.message.tool_calls is None
    assert choice.message.refusal is None
    assert raw.headers["content-type"] == "application/json; charset=utf-8"
    assert raw.request_id is not None and raw.request_id.startswith("req_")
    ai.assert_script_consumed()


async def test_usage_tokens_are_present_and_deterministic(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(text("same"), text("same"), text("same but longer: " + "x" * 400))
    first = await client.chat.completions.create(model=MODEL, messages=user("hi"), tools=TOOLS)
    second = await client.chat.completions.create(model=MODEL, messages=user("hi"), tools=TOOLS)
    third = await client.chat.completions.create(model=MODEL, messages=user("hi"))

    assert first.usage is not None and second.usage is not None and third.usage is not None
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.usage == second.usage
    assert third.usage.prompt_tokens < first.usage.prompt_tokens  # no tools: a shorter prompt
    assert third.usage.completion_tokens > first.usage.completion_tokens


async def test_parallel_tool_calls_parse_with_ids_names_and_arguments(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(
        tool_calls(
            call("get_quote", {"symbol": "AAPL"}),
            call("get_portfolio", {}),
            call("get_quote", {"symbol": "BTC-USD"}, id="call_fixedIdForTheTest000"),
        )
    )
    completion = await client.chat.completions.create(model=MODEL, messages=user("how am I doing?"), tools=TOOLS)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 3
    assert all(c.type == "function" for c in calls)
    assert [c.function.name for c in calls] == ["get_quote", "get_portfolio", "get_quote"]  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        {"symbol": "AAPL"},
        {},
        {"symbol": "BTC-USD"},
    ]
    ids = [c.id for c in calls]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 3
    assert ids[2] == "call_fixedIdForTheTest000"
    assert ai.requests[0].response_tool_call_ids == ids


async def test_malformed_arguments_arrive_verbatim(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(tool_calls(call_raw("get_quote", '{"symbol": "AA')))
    completion = await client.chat.completions.create(model=MODEL, messages=user("AAPL?"), tools=TOOLS)

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.arguments == '{"symbol": "AA'  # type: ignore[union-attr]
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls[0].function.arguments)  # type: ignore[union-attr]


async def test_the_recorded_request_is_what_the_client_sent(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(text("ok"))
    messages = user("What's my AAPL position?")
    await client.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="auto", parallel_tool_calls=True, temperature=0
    )

    [recorded] = ai.requests
    assert (recorded.method, recorded.path, recorded.status, recorded.step) == ("POST", "/v1/chat/completions", 200, 0)
    assert recorded.authorization == f"Bearer {ai.api_key}"
    assert recorded.model == MODEL
    assert recorded.messages == messages
    assert recorded.tools == TOOLS
    assert recorded.tool_names == ["get_quote", "get_portfolio"]
    assert recorded.tool_choice == "auto"
    assert recorded.parallel_tool_calls is True
    assert recorded.body["temperature"] == 0
    assert "stream" not in recorded.body
    assert recorded.system_prompt == SYSTEM
    assert recorded.last_user_message == "What's my AAPL position?"
    assert recorded.headers["x-stainless-retry-count"] == "0"


async def test_a_tool_round_trip_with_a_step_computed_from_the_tool_results(
    ai: FakeOpenAI, client: AsyncOpenAI
) -> None:
    def answer_from_tools(body: dict[str, Any]) -> Any:
        results = {r.tool_call_id: json.loads(r.content) for r in tool_results(body)}
        return text(f"AAPL is at {results['call_quote']['price']}, you hold {results['call_pf']['AAPL']} shares.")

    ai.script(
        tool_calls(call("get_quote", {"symbol": "AAPL"}, id="call_quote"), call("get_portfolio", id="call_pf")),
        answer_from_tools,
    )
    messages = user("How is my AAPL position?")
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assistant = first.choices[0].message
    messages.append(assistant.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "call_quote", "content": json.dumps({"price": 227.52})})
    messages.append({"role": "tool", "tool_call_id": "call_pf", "content": json.dumps({"AAPL": 10})})
    second = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)

    assert second.choices[0].message.content == "AAPL is at 227.52, you hold 10 shares."
    followup = ai.requests[1]
    assert [(r.tool_call_id, r.index) for r in followup.tool_results] == [("call_quote", 3), ("call_pf", 4)]
    assert followup.messages[2]["tool_calls"][0]["id"] == "call_quote"
    assert "227.52" in followup.transcript and "someone-else" not in followup.transcript
    assert [r.step for r in ai.completions] == [0, 1]
    ai.assert_script_consumed()


async def test_an_async_step_and_a_delayed_step(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    async def hallucinate(body: dict[str, Any]) -> Any:
        return text("You have $1,000,000.")  # a number no tool returned: what grounding checks must catch

    ai.script(hallucinate, delay(0.05, then=text("late but fine")))
    first = await client.chat.completions.create(model=MODEL, messages=user("balance?"))
    second = await client.chat.completions.create(model=MODEL, messages=user("again?"))
    assert first.choices[0].message.content == "You have $1,000,000."
    assert second.choices[0].message.content == "late but fine"


async def test_a_500_raises_internal_server_error_with_openais_body(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(error(500))
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert isinstance(caught.value.body, dict) and set(caught.value.body) == {"message", "type", "param", "code"}
    assert "error while processing your request" in caught.value.message
    assert ai.requests[0].step == 0


async def test_a_429_raises_rate_limit_error_with_the_rate_limit_headers(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(error(429, retry_after_s=2))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.code == "rate_limit_exceeded"
    headers = caught.value.response.headers
    assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-limit-requests"]


async def test_a_retrying_client_honours_retry_after_ms(ai: FakeOpenAI) -> None:
    ai.script(error(429, retry_after_s=0.01), text("second time lucky"))
    async with client_for(ai, max_retries=1) as retrying:
        completion = await retrying.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.choices[0].message.content == "second time lucky"
    assert [r.headers["x-stainless-retry-count"] for r in ai.requests] == ["0", "1"]


async def test_a_delay_longer_than_the_client_timeout_raises_api_timeout_error(ai: FakeOpenAI) -> None:
    ai.script(delay(30, then=text("too late")), text("next"))
    async with client_for(ai, timeout=0.2) as impatient:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            await impatient.chat.completions.create(model=MODEL, messages=user("hi"))
        assert time.monotonic() - started < 5
        # The timed-out request consumed its step; the next one gets the next step.
        completion = await impatient.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.choices[0].message.content == "next"
    assert ai.requests[0].step == 0 and ai.requests[1].step == 1
    # Leaving the fake wakes the 30 s delay at once (the test suite's teardown isn't held up).


async def test_an_exhausted_script_fails_loudly_and_is_counted(ai: FakeOpenAI) -> None:
    ai.script(text("only one"))
    async with client_for(ai, max_retries=2) as retrying:
        await retrying.chat.completions.create(model=MODEL, messages=user("hi"))
        with pytest.raises(openai.InternalServerError, match="script exhausted") as caught:
            await retrying.chat.completions.create(model=MODEL, messages=user("again"))
    assert caught.value.code == "script_exhausted"
    # x-should-retry: false, so a retrying client doesn't mask the missing step.
    assert len(ai.requests) == 2 and ai.unscripted == 1
    with pytest.raises(AssertionError, match="after the script was exhausted"):
        ai.assert_script_consumed()


async def test_leftover_steps_fail_assert_script_consumed(ai: FakeOpenAI) -> None:
    ai.script(text("never asked"))
    with pytest.raises(AssertionError, match="never requested"):
        ai.assert_script_consumed()
    assert ai.remaining == 1


async def test_a_raising_step_answers_500_and_is_kept(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(lambda body: text(body["no such key"]))
    with pytest.raises(openai.InternalServerError, match="callable step #0 raised KeyError"):
        await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert len(ai.step_failures) == 1 and isinstance(ai.step_failures[0], KeyError)


async def test_streaming_is_refused_without_consuming_a_step(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    ai.script(text("for the non-streaming call"))
    with pytest.raises(openai.BadRequestError, match="stream"):
        await client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    completion = await client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert completion.choices[0].message.content == "for the non-streaming call"
    assert ai.requests[0].step is None and ai.requests[0].status == 400


async def test_a_wrong_api_key_is_a_401(ai: FakeOpenAI) -> None:
    ai.script(text("unused"))
    async with AsyncOpenAI(base_url=ai.base_url, api_key="sk-wrong-key", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key") as caught:
            await wrong.chat.completions.create(model=MODEL, messages=user("hi"))
    assert caught.value.code == "invalid_api_key"
    assert ai.remaining == 1


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        pytest.param(
            [
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_a", "type": "function", "function": {"name": "get_quote", "arguments": "{}"}},
                        {"id": "call_b", "type": "function", "function": {"name": "get_quote", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "{}"},
            ],
            "did not have response messages: call_b",
            id="unanswered-tool-call",
        ),
        pytest.param(
            [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "call_x", "content": "{}"}],
            "must be a response to a preceeding message with 'tool_calls'",
            id="orphan-tool-message",
        ),
    ],
)
async def test_tool_protocol_violations_are_refused_as_openai_does(
    ai: FakeOpenAI, client: AsyncOpenAI, messages: list[Any], match: str
) -> None:
    ai.script(text("unused"))
    with pytest.raises(openai.BadRequestError, match=match):
        await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert ai.remaining == 1


async def test_tool_choice_without_tools_is_refused(ai: FakeOpenAI, client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="only allowed when 'tools' are specified"):
        await client.chat.completions.create(model=MODEL, messages=user("hi"), tool_choice="auto")


async def test_the_projects_tool_schemas_pass_and_a_bad_tool_name_is_refused(
    ai: FakeOpenAI, client: AsyncOpenAI
) -> None:
    from tools.registry import openai_tools

    ai.script(text("ok"))
    await client.chat.completions.create(model=MODEL, messages=user("hi"), tools=openai_tools())  # type: ignore[arg-type]
    assert ai.requests[0].status == 200 and "get_quote" in ai.requests[0].tool_names

    bad = [{"type": "function", "function": {"name": "get quote!", "parameters": {"type": "object"}}}]
    with pytest.raises(openai.BadRequestError, match="does not match pattern"):
        await client.chat.completions.create(model=MODEL, messages=user("hi"), tools=bad)  # type: ignore[arg-type]
