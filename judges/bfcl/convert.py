"""Java and JavaScript literals (as the model writes them, in strings) -> Python values.

For Java and JavaScript entries the leaderboard offers every parameter as a
string and parses the model's text back with these rules before comparing it
with the possible answers. A port of bfcl-eval's
`eval_checker/ast_eval/type_convertor/{java,js}_type_converter.py` (Apache-2.0),
kept rule for rule (regexes included, quirks included: e.g. a Java `char` is
never converted), because the verdicts must match the leaderboard's.
"""

from __future__ import annotations

import re
from typing import Any

JAVA_TYPE_CONVERSION: dict[str, type] = {
    "byte": int,
    "short": int,
    "integer": int,
    "float": float,
    "double": float,
    "long": int,
    "boolean": bool,
    "char": str,
    "Array": list,
    "ArrayList": list,
    "Set": set,
    "HashMap": dict,
    "Hashtable": dict,
    "Queue": list,
    "Stack": list,
    "String": str,
    "any": str,
}

JS_TYPE_CONVERSION: dict[str, type] = {
    "String": str,
    "integer": int,
    "float": float,
    "Bigint": int,
    "Boolean": bool,
    "dict": dict,
    "array": list,
    "any": str,
}


# -- Java ----------------------------------------------------------------------------


def java_type_converter(value: str, expected_type: str, nested_type: str | None = None) -> Any:
    if expected_type not in JAVA_TYPE_CONVERSION:
        raise ValueError(f"Unsupported type: {expected_type}")
    if expected_type in ("byte", "short", "integer"):
        return int(value) if re.match(r"^-?\d+$", value) else str(value)
    if expected_type == "float":
        if not re.match(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$", value):
            return str(value)
        return float(re.sub(r"[fF]$", "", value))
    if expected_type == "double":
        return float(value) if re.match(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$", value) else str(value)
    if expected_type == "long":
        return int(re.sub(r"[lL]$", "", value)) if re.match(r"^-?\d+[lL]$", value) else str(value)
    if expected_type == "boolean":
        return value == "true" if value in ("true", "false") else str(value)
    if expected_type == "char":
        # The leaderboard's pattern `^\'.$\'` can never match, so a char stays as written.
        return str(value) if not re.match(r"^\'.$\'", value) else value
    if expected_type in ("Array", "ArrayList", "HashMap"):
        return _parse_java_collection(value, expected_type, nested_type)
    if expected_type in ("Set", "Hashtable", "Queue", "Stack"):
        raise NotImplementedError(f"{expected_type} conversion is not implemented")
    return str(value)  # String and any


def _parse_java_collection(text: str, type_str: str, nested_type: str | None) -> Any:
    if type_str == "ArrayList":
        return _parse_arraylist(text, nested_type)
    if type_str == "Array":
        return _parse_array(text, nested_type)
    return _parse_hashmap(text)


def _java_element(text: str, nested_type: str | None) -> Any:
    if nested_type in ("char", "String"):
        return text[1:-1]  # drop the quotes
    return java_type_converter(text, nested_type) if nested_type else parse_java_value(text)


def _parse_arraylist(text: str, nested_type: str | None) -> Any:
    as_list = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if as_list:
        return [_java_element(part.strip(), nested_type) for part in as_list.group(1).split(",")]
    adds = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if adds:
        return [_java_element(match.strip(), nested_type) for match in re.findall(r"add\((.+?)\)", adds.group(1))]
    if re.search(r"new\s+ArrayList<\w*>\(\)", text):
        return []
    return text


def _parse_array(text: str, nested_type: str | None) -> Any:
    match = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if not match:
        return text
    parts = [part.strip() for part in match.group(1).split(",") if part.strip()]
    if nested_type:
        return [java_type_converter(part, nested_type) for part in parts]
    return [parse_java_value(part) for part in parts]


def _parse_hashmap(text: str) -> Any:
    match = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if match:
        elements: dict[str, Any] = {}
        puts = match.group(1)
        if puts.strip():
            for key, value in re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", puts):
                elements[key] = parse_java_value(value.strip())
        return elements
    if re.search(r"new\s+HashMap<.*?>\s*\(\)", text):
        return {}
    return text


def parse_java_value(text: str) -> Any:
    """A Java literal without a declared type."""
    if text == "true":
        return True
    if text == "false":
        return False
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if re.match(r"^-?\d+[lL]$", text):
        return int(text[:-1])
    if re.match(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$", text):
        return float(re.sub(r"[fF]$", "", text))
    return _int_or_float_or_text(text)


# -- JavaScript ----------------------------------------------------------------------


def js_type_converter(value: str, expected_type: str, nested_type: str | None = None) -> Any:
    if expected_type not in JS_TYPE_CONVERSION:
        raise ValueError(f"Unsupported type: {expected_type}")
    if expected_type == "String":
        quoted = (value.startswith('"') and value.endswith('"')) or (value.startswith("'") and value.endswith("'"))
        return value[1:-1] if quoted else str(value)
    if expected_type == "integer":
        return int(value) if re.match(r"^-?\d+$", value) else str(value)
    if expected_type == "float":
        return float(value) if re.match(r"^-?\d+(\.\d+)?$", value) else str(value)
    if expected_type == "Bigint":
        return int(value[:-1]) if re.match(r"^-?\d+n$", value) else str(value)
    if expected_type == "Boolean":
        return value == "true" if value in ("true", "false") else str(value)
    if expected_type in ("dict", "array"):
        return parse_js_collection(value, expected_type, nested_type)
    return str(value)  # any


def parse_js_collection(code: str, type_str: str, nested_type: str | None = None) -> Any:
    code = code.strip()
    if type_str == "array":
        return _parse_js_array(code, nested_type)
    if type_str == "dict":
        return _parse_js_dict(code)
    raise ValueError(f"Unsupported type: {type_str}")


def _parse_js_array(code: str, nested_type: str | None) -> Any:
    array_2d = r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)"
    array_1d = r"\[(.*?)\]|\bnew\s+Array\((.*?)\)"
    try:
        match_2d = re.match(array_2d, code)
        if match_2d:
            elements = []
            for index, inner in enumerate(re.findall(r"\[(.*?)\]", match_2d.group(0))):
                inner = inner.strip()
                if index == 0 and inner.startswith("["):
                    inner = inner[1:]
                elements.append([parse_js_value(part.strip()) for part in inner.split(",")])
            return elements
        match_1d = re.match(array_1d, code)
        if not match_1d:
            return code
        body = match_1d.group(1) if match_1d.group(1) is not None else match_1d.group(2)
        body = (body or "").strip()
        parts = body.split(",") if body else []
        if nested_type:
            return [
                js_type_converter(part.strip(), nested_type, "String")
                if part.strip().startswith(("'", '"'))
                else js_type_converter(part.strip(), nested_type)
                for part in parts
            ]
        return [parse_js_value(part.strip()) for part in parts]
    except Exception:  # the leaderboard falls back to the text on any parse trouble
        return code


def _parse_js_dict(code: str) -> Any:
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)
    if not match:
        return code
    try:
        pairs = re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", match.group(1))
        out: dict[str, Any] = {}
        for key, value in pairs:
            key = key.strip().strip("'\"")
            value = value.strip()
            if value.startswith("[") and value.endswith("]"):
                out[key] = parse_js_collection(value, "array")
            elif value.startswith("{") and value.endswith("}"):
                out[key] = parse_js_collection(value, "dict")
            else:
                out[key] = parse_js_value(value.strip("'\""))
        return out
    except Exception:
        return code


def parse_js_value(text: str) -> Any:
    text = text.strip()
    if text == "true":
        return True
    if text == "false":
        return False
    if (text.startswith('"') and text.endswith('"')) or (text.startswith("'") and text.endswith("'")):
        return text[1:-1]
    return _int_or_float_or_text(text)


def _int_or_float_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
