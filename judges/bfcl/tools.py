"""BFCL function docs -> OpenAI tools, the way the leaderboard sends them to a function-calling model.

Two steps, both as in `bfcl-eval` for an OpenAI-compatible FC model:

1. `with_language_hints` (bfcl_eval.utils._func_doc_language_specific_pre_processing):
   every description gets "Note that the provided function is in Python 3 /
   Java 8 SDK / JavaScript syntax."; Java and JavaScript parameters become
   strings (the model writes Java/JS literals as text, the checker parses them
   back), their element / entry schemas moved into the description.
2. `to_openai_tools` (bfcl_eval.model_handler.utils.convert_to_tool with
   GORILLA_TO_OPENAPI, OpenAI-completions style): BFCL's Python-flavoured type
   names become JSON-schema ones (`dict` -> object, `float` -> number with
   `format: float` and a note in the description, `tuple`/`list` -> array,
   `any` -> string, Java's `long`/`short`/`byte` -> integer, ...; an unknown or
   missing type -> string), recursing into object properties and array items,
   and a dot in a function name becomes `_` (OpenAI names allow no dot; the
   checker compares against the same converted name).

`any` -> string is what the leaderboard sends (and its checker wants a string
for `any`), so we keep it rather than dropping the type.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from envs.bfcl_mt.schemas import cast_properties

from .data import language_of

_HINTS = {
    "python": " Note that the provided function is in Python 3 syntax.",
    "java": " Note that the provided function is in Java 8 SDK syntax.",
    "javascript": " Note that the provided function is in JavaScript syntax.",
}


def openai_name(name: str) -> str:
    """The function name as offered to the model: OpenAI's `^[a-zA-Z0-9_-]{1,64}$` has no dot."""
    return re.sub(r"\.", "_", name)


def with_language_hints(functions: list[dict[str, Any]], category: str) -> list[dict[str, Any]]:
    """A copy of the function docs with the leaderboard's language hints (what the model reads)."""
    functions = copy.deepcopy(functions)
    language = language_of(category)
    for item in functions:
        item["description"] = item.get("description", "") + _HINTS[language]
        properties = item.get("parameters", {}).get("properties", {})
        for value in properties.values():
            if language == "java":
                _java_param(value)
            elif language == "javascript":
                _js_param(value)
    return functions


def _java_param(value: dict[str, Any]) -> None:
    kind = value.get("type")
    if kind == "any":
        value["description"] = value.get("description", "") + (
            " This parameter can be of any type of Java object in string representation."
        )
    else:
        value["description"] = (
            value.get("description", "") + f" This is Java {kind} type parameter in string representation."
        )
    if kind in ("ArrayList", "Array"):
        value["description"] += (
            f" The list elements are of type {value['items']['type']}; they are not in string representation."
        )
        del value["items"]
    value["type"] = "string"


def _js_param(value: dict[str, Any]) -> None:
    kind = value.get("type")
    if kind == "any":
        value["description"] = value.get("description", "") + (
            " This parameter can be of any type of JavaScript object in string representation."
        )
    else:
        value["description"] = (
            value.get("description", "") + f" This is JavaScript {kind} type parameter in string representation."
        )
    if kind == "array":
        value["description"] += (
            f" The list elements are of type {value['items']['type']}; they are not in string representation."
        )
        del value["items"]
    if kind == "dict" and "properties" in value:  # not every dict has properties
        value["description"] += (
            " The dictionary entries have the following schema; they are not in string representation. "
            f"{json.dumps(value['properties'])}"
        )
        del value["properties"]
    value["type"] = "string"


def to_openai_tools(functions: list[dict[str, Any]], category: str, *, hints: bool = True) -> list[dict[str, Any]]:
    """The `tools` of the chat request for one entry (language hints first unless `hints=False`)."""
    docs = with_language_hints(functions, category) if hints else copy.deepcopy(functions)
    tools = []
    for item in docs:
        item["name"] = openai_name(item["name"])
        parameters = item.setdefault("parameters", {})
        parameters["type"] = "object"
        parameters["properties"] = cast_properties(parameters.get("properties", {}))
        tools.append({"type": "function", "function": item})
    return tools
