"""MCP tools as the model sees them: OpenAI tool schemas, argument checks, results as text.

Arguments are checked against the tool's input schema on the client side
(`jsonschema`, one compiled validator per tool), so a model mistake becomes a
clear message in the tool result instead of a server round trip or a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import mcp_types
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators

log = logging.getLogger(__name__)


def openai_tool(name: str, tool: mcp_types.Tool) -> dict[str, Any]:
    """One MCP tool -> an OpenAI `tools` entry under `name` (which may be namespaced)."""
    parameters = dict(tool.input_schema or {})
    parameters.setdefault("type", "object")
    if parameters.get("type") == "object":
        parameters.setdefault("properties", {})
    description = tool.description or tool.title or ""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


@dataclass
class ToolEntry:
    """A tool as the env routes it: the model-facing name, where it lives, its checks."""

    name: str  # what the model calls
    server: str  # which server of the env serves it
    mcp_name: str  # its name on that server
    schema: dict[str, Any]  # the OpenAI tool schema
    # MCP 2025-11-25 `execution.taskSupport: "required"`: callable only as a task, which our client cannot do
    task_required: bool = False
    _validator: Any = field(default=None, repr=False)

    @classmethod
    def build(cls, name: str, server: str, tool: mcp_types.Tool) -> ToolEntry:
        schema = openai_tool(name, tool)
        parameters = schema["function"]["parameters"]
        validator = None
        try:
            validator_cls = validators.validator_for(parameters)
            validator_cls.check_schema(parameters)
            validator = validator_cls(parameters)
        except jsonschema_exceptions.SchemaError as exc:
            # A server with a broken schema still works; the server checks its own arguments.
            log.warning("tool %r of server %r has an invalid input schema (%s); not checked", name, server, exc.message)
        execution = tool.execution
        required = execution is not None and execution.task_support == "required"
        return cls(
            name=name, server=server, mcp_name=tool.name, schema=schema, task_required=required, _validator=validator
        )

    def check_arguments(self, arguments: dict[str, Any]) -> str | None:
        """None when the arguments fit the input schema, else a one-line reason."""
        if self._validator is None:
            return None
        error = jsonschema_exceptions.best_match(self._validator.iter_errors(arguments))
        if error is None:
            return None
        path = "/".join(str(part) for part in error.absolute_path)
        return f"at '{path}': {error.message}" if path else error.message


def result_text(result: mcp_types.CallToolResult) -> str:
    """The text a model reads for a tool result: text blocks joined, other blocks
    named, structured content as JSON when there is no text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri} ({resource.mime_type or 'binary'})]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link {block.uri}]")
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type} ({block.mime_type})]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def cap_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut `text` to `max_chars` with a marker the model can see; (text, truncated)."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text, False
    omitted = len(text) - max_chars
    return f"{text[:max_chars]}\n...[truncated: {omitted} more characters not shown]", True
