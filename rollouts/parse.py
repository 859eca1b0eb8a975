"""Reading an assistant reply: thinking, tool calls (native or as text), final text.

Servers differ in what they hand back. vLLM with a tool parser fills
`message.tool_calls`; without one (or with a model that drifts from the
format) the calls arrive as text: Hermes/Qwen3 `<tool_call>{...}</tool_call>`
blocks (several per turn for parallel calls) or a bare JSON
`{"name": ..., "arguments": ...}` reply (or a list of them). Qwen3's thinking
arrives either as a `reasoning_content`/`reasoning` field (vLLM with a
reasoning parser) or inline as `<think>...</think>` in the content; when the
chat template opens the think block itself, the content holds only
`...</think>`.

Whatever the model wrote, parsing it never raises: JSON that is broken, nested too deep or
holds numbers or text no consumer takes is a parse error or a call the env answers with
`bad_arguments` (`contracts.model_output`), and lone surrogates in the text are replaced, so a
reply can always be written to JSONL and sent back.

Whatever the form, `parse_reply` gives one normalised assistant message in
OpenAI format: `content` without thinking and without tool-call text,
`tool_calls` as OpenAI dicts, and the thinking under `reasoning_content` (the
field vLLM's reasoning parsers and Qwen3's chat template use) when it is kept.
Keeping thinking out of `content` means judges and exporters read the final
answer without stripping anything; exporters re-inline it where a format wants
`<think>` text.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts import ModelJsonError, ToolCall, loads_model_json, valid_text

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_NAME_IN_TEXT = re.compile(r'"name"\s*:\s*"([^"]+)"')
_FENCE = "```"

ThinkHistory = Literal["qwen3", "drop"]


class ParsedReply(BaseModel):
    """One assistant reply, normalised."""

    message: dict[str, Any]  # OpenAI assistant message as stored in the trajectory
    content: str  # the text without thinking and without tool-call text
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    parse_errors: list[str] = Field(default_factory=list)  # one entry per text call that did not parse
    text_tool_calls: bool = False  # the calls came as text, not as `message.tool_calls`


def split_think(content: str | None) -> tuple[str | None, str]:
    """Split `<think>...</think>` off the front of a reply: (reasoning, rest).

    A reply that holds only a closing tag is the output of a template that
    opened the think block in the prompt (Qwen3 with thinking on): everything
    before `</think>` is reasoning.
    """
    text = content or ""
    close = text.find(THINK_CLOSE)
    if close < 0:
        open_at = text.find(THINK_OPEN)
        if open_at >= 0:  # an unclosed think block (cut by max_tokens): all of it is reasoning
            return text[open_at + len(THINK_OPEN) :].strip(), text[:open_at].strip()
        return None, text
    head, rest = text[:close], text[close + len(THINK_CLOSE) :]
    open_at = head.find(THINK_OPEN)
    reasoning = head[open_at + len(THINK_OPEN) :] if open_at >= 0 else head
    prefix = head[:open_at] if open_at >= 0 else ""
    return reasoning.strip(), (prefix + rest).strip()


def new_call_id() -> str:
    # The same shape vLLM uses, so ids from text-form calls look like native ones.
    return f"call_{uuid.uuid4().hex[:24]}"


def _call_from_obj(obj: Any) -> ToolCall | None:
    """A ToolCall from `{"name", "arguments"|"parameters"}`; None when it is not one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI shape inside text
        return _call_from_obj(obj["function"])
    args = obj.get("arguments", obj.get("parameters", {}))
    # Text is kept raw: the env reports text that is not a JSON object as bad_arguments. The value
    # came from `loads_model_json`, so it re-encodes (bounded depth, finite numbers).
    raw = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(id=new_call_id(), name=obj["name"], arguments=raw)


def _parse_tool_call_blocks(text: str) -> tuple[list[ToolCall], list[str], str]:
    """Hermes/Qwen3 `<tool_call>` blocks: (calls, errors, text outside the blocks)."""
    calls: list[ToolCall] = []
    errors: list[str] = []
    for match in _TOOL_CALL_BLOCK.finditer(text):
        body = match.group(1).strip()
        try:
            obj = loads_model_json(body)
        except ModelJsonError as exc:
            errors.append(f"<tool_call> is {exc}")
            # Recover the name when we can: the env then answers `bad_arguments`,
            # which tells the model what went wrong instead of ending the episode.
            name = _NAME_IN_TEXT.search(body)
            if name:
                raw_args = _raw_arguments_text(body)
                calls.append(ToolCall(id=new_call_id(), name=name.group(1), arguments=raw_args))
            continue
        objs = obj if isinstance(obj, list) else [obj]
        for item in objs:
            call = _call_from_obj(item)
            if call is None:
                errors.append("<tool_call> JSON has no string 'name'")
            else:
                calls.append(call)
    rest = _TOOL_CALL_BLOCK.sub("", text).strip()
    return calls, errors, rest


def _raw_arguments_text(body: str) -> str:
    """The text after `"arguments":` in a broken block, so the env sees what the model wrote."""
    at = re.search(r'"(?:arguments|parameters)"\s*:\s*', body)
    if not at:
        return body
    tail = body[at.end() :].rstrip()
    return tail[:-1] if tail.endswith("}") else tail


def _parse_bare_json(text: str) -> list[ToolCall] | None:
    """A reply that is only `{"name", "arguments"}` (or a list of them); None otherwise."""
    stripped = _unfenced(text.strip())
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        obj = loads_model_json(stripped)
    except ModelJsonError:
        return None
    objs = obj if isinstance(obj, list) else [obj]
    if not objs:
        return None
    calls = [_call_from_obj(item) for item in objs]
    if any(call is None for call in calls):
        return None  # JSON, but not tool calls: it is the model's answer
    for item in objs:  # a bare {"name": ...} without arguments is more likely data than a call
        if "arguments" not in item and "parameters" not in item and "function" not in item:
            return None
    return [call for call in calls if call is not None]


def _unfenced(text: str) -> str:
    """The body of a reply that is one ```json fenced block; the text itself otherwise. (String
    operations: a regular expression for this backtracks for minutes on a long run of spaces.)"""
    if len(text) < 2 * len(_FENCE) or not (text.startswith(_FENCE) and text.endswith(_FENCE)):
        return text
    body = text[len(_FENCE) : -len(_FENCE)]
    return body.removeprefix("json").strip()


def _native_calls(raw_calls: list[Any]) -> list[ToolCall]:
    calls = []
    for raw in raw_calls:
        data = raw if isinstance(raw, dict) else raw.model_dump()
        function = data.get("function") or {}
        name, arguments = function.get("name"), function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str | dict):  # a server's oddity (a list, a number): the env says why
            arguments = json.dumps(arguments, default=str)
        calls.append(
            ToolCall(
                id=str(data.get("id") or new_call_id()),
                name=valid_text(name) if isinstance(name, str) else "",
                arguments=valid_text(arguments) if isinstance(arguments, str) else arguments,
            )
        )
    return calls


def parse_reply(
    message: dict[str, Any],
    *,
    tools_offered: bool = True,
    keep_think: bool = True,
) -> ParsedReply:
    """Normalise one assistant message (a dict from `ChatCompletionMessage.model_dump()`)."""
    content = message.get("content")
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    reasoning = valid_text(reasoning) if isinstance(reasoning, str) else None
    inline_reasoning, text = split_think(valid_text(content) if isinstance(content, str) else None)
    if inline_reasoning is not None:
        reasoning = f"{reasoning}\n\n{inline_reasoning}" if reasoning else inline_reasoning

    errors: list[str] = []
    text_calls = False
    native = message.get("tool_calls") or []
    if native:
        calls = _native_calls(native)
    elif tools_offered and "<tool_call>" in text:
        calls, errors, text = _parse_tool_call_blocks(text)
        text_calls = True
    else:
        bare = _parse_bare_json(text) if tools_offered else None
        calls = bare or []
        if bare:
            text, text_calls = "", True

    stored: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        stored["tool_calls"] = [call.to_openai() for call in calls]
    if keep_think and reasoning:
        stored["reasoning_content"] = reasoning
    return ParsedReply(
        message=stored,
        content=text,
        reasoning=reasoning,
        tool_calls=calls,
        parse_errors=errors,
        text_tool_calls=text_calls,
    )


def inline_think(message: dict[str, Any]) -> str:
    """The content with its reasoning put back in front as `<think>` text (for exporters, ART)."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content")
    if not reasoning:
        return content
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content}"


def history_for_request(messages: list[dict[str, Any]], mode: ThinkHistory = "qwen3") -> list[dict[str, Any]]:
    """The conversation as it is sent back to the server.

    `reasoning_content` is not an OpenAI request field, so thinking that is
    sent back goes inline as `<think>` text, which every Qwen3 chat template
    reads. What is sent follows Qwen3's template: the thinking of assistant
    turns before the last user query is dropped, the thinking of the turns
    after it (the tool-calling loop now under way) is kept. `mode="drop"`
    drops the thinking of every earlier turn (for templates that never want it).
    """
    last_query = -1
    for index, message in enumerate(messages):
        if message.get("role") == "user":
            last_query = index
    out = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or "reasoning_content" not in message:
            out.append(message)
            continue
        sent = {key: value for key, value in message.items() if key != "reasoning_content"}
        if mode == "qwen3" and index > last_query:
            sent["content"] = inline_think(message)
        out.append(sent)
    return out
