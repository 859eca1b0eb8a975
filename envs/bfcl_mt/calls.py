"""Calls between the two forms the leaderboard and an MCP env use: Python call text and ToolCall.

The leaderboard's ground truth and its checker speak Python call text (`cd(folder='document')`,
sometimes positional: `sort('final_report.pdf')`); the env speaks `ToolCall`s with JSON
arguments. A model's call becomes call text only when it is a call of the tools the task's
scenario holds: its name one of the functions of the entry's involved API classes (a function
of another API is an unknown tool, as the leaderboard's execution finds no such name), every key
one of that function's parameters, the values Python literals (`repr` of JSON values). Any other
call becomes `UNSAFE_CALL`, which names no function: executed, it is an error result that
changes nothing, as the leaderboard's execution of an unknown function or a bad keyword is.
(The text is then executed by `envs.bfcl_mt.executor`, which never `eval`s: this check is the
first of two walls.)
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, NamedTuple

from contracts import ToolCall

from . import data

# A name no API defines: executed, a NameError result, as the leaderboard's for an unknown function.
UNSAFE_CALL = "invalid_function_call()"


@cache
def _class_functions(class_name: str) -> dict[str, tuple[str, ...]]:
    cls = data.api_class(class_name)
    return {
        doc["name"]: tuple(p for p in inspect.signature(getattr(cls, doc["name"])).parameters if p != "self")
        for doc in data.func_docs(class_name)
    }


def scenario_functions(involved_classes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The functions a scenario's API instances answer (function -> its parameters in order): those
    of its involved classes, held-out `miss_func` ones included (the leaderboard executes them too)."""
    out: dict[str, tuple[str, ...]] = {}
    for class_name in involved_classes:
        if class_name not in data.API_CLASSES:
            raise ValueError(f"unknown BFCL API class {class_name!r}")
        out.update(_class_functions(class_name))
    return out


@cache
def parameter_names() -> dict[str, tuple[str, ...]]:
    """Every API's functions and their parameters (to name the positional arguments of the ground truth)."""
    return scenario_functions(data.API_CLASSES)


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


class Decoded(NamedTuple):
    """A model's call as the checker gets it: its call text (None: dropped), and why it was
    not executable as it stands (None: it is)."""

    text: str | None
    problem: str | None = None


def decode(call: ToolCall, functions: Mapping[str, Sequence[str]]) -> Decoded:
    """A model's call checked against the scenario's `functions` (`scenario_functions`)."""
    try:
        arguments = call.parsed_arguments()
    except (ValueError, RecursionError):  # not a JSON object: the leaderboard's decoding drops the call
        return Decoded(None)
    parameters = functions.get(call.name)
    if parameters is None:
        return Decoded(UNSAFE_CALL, f"unknown tool {call.name[:80]!r}")
    unknown = [key for key in arguments if key not in parameters]
    if unknown:
        return Decoded(UNSAFE_CALL, f"bad arguments for {call.name!r}: no parameter {str(unknown[0])[:80]!r}")
    try:
        return Decoded(f"{call.name}({','.join(f'{key}={value!r}' for key, value in arguments.items())})")
    except RecursionError:  # nested past what repr can write
        return Decoded(UNSAFE_CALL, f"bad arguments for {call.name!r}: nested too deep")


def call_text(call: ToolCall, functions: Mapping[str, Sequence[str]]) -> str | None:
    """A model's call as the call text the checker executes (as the leaderboard's
    `convert_to_function_call` writes it); None when its arguments are not a JSON object
    (the leaderboard's decoding drops such a call); `UNSAFE_CALL` when it is not a call of one
    of `functions` with that function's parameters."""
    return decode(call, functions).text
