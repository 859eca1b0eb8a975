"""Reading what a model wrote without letting it crash anything: every failure is one ValueError.

A policy's text is untrusted input (a model under RL finds whatever pays), and garbage in it is the
model's mistake: a `bad_arguments` outcome or a parse error it learns from, never an exception that
ends the rollout as an infrastructure failure (hidden from training, retried on every resume).
`json.loads` alone fails in several ways besides `JSONDecodeError`: `RecursionError` on arguments
nested ~1,000 deep, a plain `ValueError` on an integer of more than 4,300 digits (Python's
`int_max_str_digits`), and it accepts what later breaks a consumer: `NaN`/`Infinity` and numbers
like `1e999` (no JSON encoder downstream takes them) and lone surrogates (`"\\ud800"`, which no
UTF-8 writer, JSONL line or MCP request can encode). `loads_model_json` turns each into a
`ModelJsonError` and bounds the nesting at `MAX_DEPTH`, so what it returns is safe to validate,
re-encode and send (JSON Schema validation, pydantic and the MCP client all recurse per level).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "ModelJsonError", "check_model_value", "loads_model_json", "valid_text"]

# Far beyond any tool's arguments (BFCL's deepest are 4 levels), far below the interpreter's limit.
MAX_DEPTH = 64

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ModelJsonError(ValueError):
    """What a model wrote is not usable JSON; the message reads after "arguments are ...":
    "not valid JSON: ...", "nested deeper than 64 levels", "not valid Unicode: ..."."""


def _no_constant(name: str) -> Any:
    raise ModelJsonError(f"not valid JSON: {name} is not a JSON number")


def loads_model_json(text: str | bytes) -> Any:
    """`json.loads` for model output: raises only `ModelJsonError` (a ValueError)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ModelJsonError:
        raise
    except RecursionError:
        raise ModelJsonError(f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ModelJsonError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except (ValueError, TypeError) as exc:  # an int over the digit limit; bytes that are not UTF-8
        reason = str(exc).split(";")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelJsonError(f"not valid JSON: {reason}") from None
    check_model_value(value)
    return value


def check_model_value(value: Any) -> None:
    """Raise `ModelJsonError` if decoded model output nests deeper than `MAX_DEPTH`, holds a
    number that is not finite or a string that is not valid Unicode. Iterative: any depth is safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ModelJsonError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _LONE_SURROGATE.search(key):
                        raise ModelJsonError("not valid Unicode: a lone surrogate in a key")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ModelJsonError("not valid JSON: a number out of range")
        elif isinstance(item, str) and _LONE_SURROGATE.search(item):
            raise ModelJsonError("not valid Unicode: a lone surrogate")


def valid_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD, so that it can be written as UTF-8 (a
    reply's `"\\ud800"` escape decodes to one; the JSONL writer and the next request would fail)."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)
