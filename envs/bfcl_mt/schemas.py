"""BFCL function docs -> MCP tool schemas, as the leaderboard sends them to a function-calling model.

The same two steps as the leaderboard for an OpenAI-compatible FC model (`judges.bfcl.tools`, which
single-turn BFCL uses, casts types with this module's `cast_properties`; envs sit below judges):
the Python hint appended to the description
(`_func_doc_language_specific_pre_processing`), then BFCL's type names cast to JSON-schema ones
(`convert_to_tool` with `GORILLA_TO_OPENAPI`: `dict` -> object, `float` -> number with
`format: float` and a note, `tuple` -> array, `any` -> string, unknown or missing -> string),
recursing into object properties and array items as far as the leaderboard does.

The docs' `response` schemas are not part of an MCP tool (a tool's output schema would oblige
structured results the leaderboard's APIs do not give); the description still says what returns.
"""

from __future__ import annotations

import copy
from typing import Any

# bfcl_eval.constants.type_mappings.GORILLA_TO_OPENAPI (the types the multi-turn docs use, and more)
GORILLA_TO_OPENAPI: dict[str, str] = {
    "integer": "integer",
    "number": "number",
    "float": "number",
    "string": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "dict": "object",
    "object": "object",
    "tuple": "array",
    "any": "string",
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "double": "number",
    "char": "string",
    "ArrayList": "array",
    "Array": "array",
    "HashMap": "object",
    "Hashtable": "object",
    "Queue": "array",
    "Stack": "array",
    "Any": "string",
    "String": "string",
    "Bigint": "integer",
}
PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


def json_schema_type(bfcl_type: str | None) -> str:
    """One BFCL type name -> its JSON-schema type (unknown or missing -> string, as BFCL does)."""
    return GORILLA_TO_OPENAPI.get(bfcl_type or "", "string")


def cast_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """bfcl_eval.model_handler.utils._cast_to_openai_type, in place (the caller owns a copy)."""
    for value in properties.values():
        if "type" not in value:
            value["type"] = "string"
        else:
            if value["type"] == "float":
                value["format"] = "float"
                value["description"] = value.get("description", "") + " This is a float type value."
            value["type"] = json_schema_type(value["type"])
        # Supported nesting, as the leaderboard's: list of any, list of list of any, list of dict,
        # list of list of dict, dict of any.
        if value["type"] in ("array", "object"):
            if "properties" in value:
                value["properties"] = cast_properties(value["properties"])
            elif "items" in value:
                items = value["items"]
                items["type"] = json_schema_type(items.get("type"))
                if items["type"] == "array" and "items" in items:
                    items["items"]["type"] = json_schema_type(items["items"].get("type"))
                elif items["type"] == "object" and "properties" in items:
                    items["properties"] = cast_properties(items["properties"])
    return properties


def tool_schema(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One function doc -> (description, JSON-schema input schema) of its MCP tool."""
    doc = copy.deepcopy(doc)
    parameters = doc.get("parameters", {})
    parameters["type"] = "object"
    parameters["properties"] = cast_properties(parameters.get("properties", {}))
    return doc.get("description", "") + PYTHON_HINT, parameters
