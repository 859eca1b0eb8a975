"""Reading assistant replies: every tool-call form, thinking, and the history sent back."""

from __future__ import annotations

import json

from rollouts.parse import history_for_request, parse_reply, split_think


def test_native_tool_calls_are_kept_in_order_with_raw_arguments() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_price", "arguments": '{"zone": "DE"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_load", "arguments": '{"zone": '}},
        ],
    }
    reply = parse_reply(message)
    assert [c.name for c in reply.tool_calls] == ["get_price", "get_load"]
    assert [c.id for c in reply.tool_calls] == ["call_a", "call_b"]
    assert reply.tool_calls[1].arguments == '{"zone": '  # broken JSON reaches the env as written
    assert reply.parse_errors == [] and not reply.text_tool_calls
    assert reply.message["tool_calls"][0]["function"]["arguments"] == '{"zone": "DE"}'


def test_hermes_tool_call_blocks_several_per_turn() -> None:
    content = (
        "Let me look both up.\n"
        '<tool_call>\n{"name": "get_price", "arguments": {"zone": "DE", "hour": 3}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_load", "arguments": {"zone": "FR"}}\n</tool_call>'
    )
    reply = parse_reply({"role": "assistant", "content": content})
    assert reply.text_tool_calls
    assert [(c.name, c.parsed_arguments()) for c in reply.tool_calls] == [
        ("get_price", {"zone": "DE", "hour": 3}),
        ("get_load", {"zone": "FR"}),
    ]
    assert len({c.id for c in reply.tool_calls}) == 2 and all(c.id.startswith("call_") for c in reply.tool_calls)
    # The stored message is normal OpenAI form: calls in tool_calls, the rest in content.
    assert reply.message["content"] == "Let me look both up."
    assert [tc["function"]["name"] for tc in reply.message["tool_calls"]] == ["get_price", "get_load"]


def test_tool_call_block_with_parameters_key_and_unclosed_block() -> None:
    reply = parse_reply({"role": "assistant", "content": '<tool_call>{"name": "f", "parameters": {"a": 1}}'})
    assert [(c.name, c.parsed_arguments()) for c in reply.tool_calls] == [("f", {"a": 1})]


def test_broken_tool_call_blocks_count_as_parse_errors() -> None:
    content = (
        '<tool_call>{"name": "get_price", "arguments": {"zone": }</tool_call>'  # name recoverable
        "<tool_call>not json at all</tool_call>"  # nothing recoverable
        '<tool_call>{"name": "get_load", "arguments": {}}</tool_call>'
    )
    reply = parse_reply({"role": "assistant", "content": content})
    assert len(reply.parse_errors) == 2
    assert [c.name for c in reply.tool_calls] == ["get_price", "get_load"]
    # The recovered call keeps the model's broken text, so the env reports bad_arguments.
    assert reply.tool_calls[0].arguments.startswith('{"zone": ')
    assert reply.message["content"] == ""


def test_bare_json_reply_single_and_list() -> None:
    single = parse_reply({"role": "assistant", "content": '{"name": "get_price", "arguments": {"zone": "DE"}}'})
    assert [(c.name, c.parsed_arguments()) for c in single.tool_calls] == [("get_price", {"zone": "DE"})]
    assert single.text_tool_calls and single.message["content"] == ""
    many = parse_reply(
        {
            "role": "assistant",
            "content": '```json\n[{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{\\"x\\": 1}"}]\n```',
        }
    )
    assert [(c.name, c.parsed_arguments()) for c in many.tool_calls] == [("a", {}), ("b", {"x": 1})]


def test_json_that_is_an_answer_is_not_a_tool_call() -> None:
    for content in ('{"total_mwh": 12.5}', '{"name": "Berlin"}', "[1, 2, 3]", "The answer is 4."):
        reply = parse_reply({"role": "assistant", "content": content})
        assert reply.tool_calls == [] and reply.content == content
    # Without tools offered, even a call-shaped reply is the answer.
    reply = parse_reply({"role": "assistant", "content": '{"name": "f", "arguments": {}}'}, tools_offered=False)
    assert reply.tool_calls == []


def test_think_inline_is_split_off_and_kept_as_reasoning_content() -> None:
    reply = parse_reply({"role": "assistant", "content": "<think>\nI need the price.\n</think>\n\nIt is 42 EUR/MWh."})
    assert reply.content == "It is 42 EUR/MWh."
    assert reply.reasoning == "I need the price."
    assert reply.message == {
        "role": "assistant",
        "content": "It is 42 EUR/MWh.",
        "reasoning_content": "I need the price.",
    }
    dropped = parse_reply({"role": "assistant", "content": "<think>x</think>answer"}, keep_think=False)
    assert dropped.message == {"role": "assistant", "content": "answer"} and dropped.reasoning == "x"


def test_think_opened_by_the_template_and_think_before_tool_calls() -> None:
    # Qwen3 with thinking on: the prompt opens <think>, the reply has only the closing tag.
    reply = parse_reply(
        {
            "role": "assistant",
            "content": 'plan first\n</think>\n\n<tool_call>{"name": "f", "arguments": {}}</tool_call>',
        }
    )
    assert reply.reasoning == "plan first"
    assert [c.name for c in reply.tool_calls] == ["f"]
    assert reply.message["content"] == ""
    # A <tool_call> inside the thinking is not a call.
    inner = parse_reply({"role": "assistant", "content": '<think><tool_call>{"name": "f"}</tool_call></think>done'})
    assert inner.tool_calls == [] and inner.content == "done"


def test_reasoning_field_from_server_and_unclosed_think() -> None:
    reply = parse_reply({"role": "assistant", "content": "42", "reasoning_content": "sum it"})
    assert reply.message["reasoning_content"] == "sum it" and reply.content == "42"
    reply = parse_reply({"role": "assistant", "content": "7", "reasoning": "vllm's newer field name"})
    assert reply.reasoning == "vllm's newer field name"
    assert split_think("<think>cut off by max_tok") == ("cut off by max_tok", "")
    assert split_think("no thinking") == (None, "no thinking")


def test_history_sent_back_follows_the_qwen3_template() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "old answer", "reasoning_content": "old thought"},
        {"role": "user", "content": "second question"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "new thought",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]
    sent = history_for_request(messages)
    assert all("reasoning_content" not in m for m in sent)  # not an OpenAI request field
    assert sent[2]["content"] == "old answer"  # before the last user query: thinking dropped
    assert sent[4]["content"] == "<think>\nnew thought\n</think>\n\n"  # current tool loop: kept inline
    assert sent[4]["tool_calls"] == messages[4]["tool_calls"]
    dropped = history_for_request(messages, "drop")
    assert dropped[4]["content"] == "" and dropped[2]["content"] == "old answer"
    assert messages[4]["reasoning_content"] == "new thought"  # the stored trajectory is untouched
    json.dumps(sent)
