"""Calls between the two forms the leaderboard and an MCP env use: Python call text and ToolCall.

The leaderboard's ground truth and its checker speak Python call text (`cd(folder='document')`,
sometimes positional: `sort('final_report.pdf')`); the env speaks `ToolCall`s with JSON
arguments. The checker `eval`s the text, so text made from a model's call must be safe: only
names that are identifiers, values written as Python literals (`repr` of JSON values).
"""

from __future__ import annotations

import ast
import inspect
import json
import keyword
from functools import cache
from typing import Any

from contracts import ToolCall

from . import data

# A name no API defines: the checker's eval of it fails with a NameError, as an unknown function does.
UNSAFE_CALL = "invalid_function_call()"


@cache
def parameter_names() -> dict[str, list[str]]:
    """Function name -> its parameters in order (to name the positional arguments of the ground truth)."""
    names: dict[str, list[str]] = {}
    for class_name in data.API_CLASSES:
        cls = data.api_class(class_name)
        for doc in data.func_docs(class_name):
            signature = inspect.signature(getattr(cls, doc["name"]))
            names[doc["name"]] = [p for p in signature.parameters if p != "self"]
    return names


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """`name(a, b=1)` -> (name, {param: value}); positional arguments get their parameter's name."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a function call: {text!r}")
    name = node.func.id
    arguments: dict[str, Any] = {}
    if node.args:
        params = parameter_names().get(name, [])
        if len(node.args) > len(params):
            raise ValueError(f"{text!r}: more positional arguments than {name} has parameters")
        for param, value in zip(params, node.args, strict=False):
            arguments[param] = ast.literal_eval(value)
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError(f"{text!r}: ** arguments are not supported")
        arguments[kw.arg] = ast.literal_eval(kw.value)
    return name, arguments


def to_tool_call(text: str, call_id: str) -> ToolCall:
    name, arguments = parse_call(text)
    return ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))


def _safe_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def call_text(call: ToolCall) -> str | None:
    """A model's call as the call text the checker executes (as the leaderboard's
    `convert_to_function_call` writes it); None when its arguments are not a JSON object
    (the leaderboard's decoding drops such a call); `UNSAFE_CALL` when a name could not be
    executed safely."""
    try:
        arguments = call.parsed_arguments()
    except ValueError:
        return None
    if not _safe_name(call.name) or not all(isinstance(k, str) and _safe_name(k) for k in arguments):
        return UNSAFE_CALL
    return f"{call.name}({','.join(f'{key}={value!r}' for key, value in arguments.items())})"
