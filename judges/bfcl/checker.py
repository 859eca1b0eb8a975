"""The leaderboard's AST checker, as pure functions: one model reply -> one verdict.

A port of bfcl-eval's `eval_checker/ast_eval/ast_checker.py` plus the pieces of
`eval_runner.py` around it (decoding an FC reply, the relevance/irrelevance
rule), for an OpenAI-compatible function-calling model. It keeps the
leaderboard's rules, including the ones that look odd, because the point is to
give the leaderboard's number:

- each parameter's value must be one of its possible answers; a possible
  answer `""` marks the parameter optional; a parameter with no possible
  answers listed is unexpected;
- strings compare after `standardize_string` (no spaces or `,./-_*^`, lower
  case, `'` -> `"`), also inside lists and dicts;
- types are Python's exact types (`True` is not an int), except that an int is
  accepted for a `float`; a value whose type matches the possible answers'
  instead of the declared one counts as a "variable" and is compared as is;
- parallel categories match calls to answers in any order, greedily (each
  possible answer takes the first unused call that passes); "multiple" checks
  the one expected call; simple needs exactly one call;
- Java/JavaScript values are strings parsed back with `convert.py`;
- irrelevance: right when the reply decodes to no call (text, or arguments
  that are not JSON); live_relevance: right when it decodes to at least one.

The reply is stored as the leaderboard's FC handlers store it
(`model_responses`): a list of `{name: arguments_json_text}` when the model
called tools, else its text content. `reply_from_calls` builds that.

This module never imports bfcl_eval; tests/test_bfcl_agreement.py runs the
leaderboard's own checker on the same replies and compares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from .convert import JAVA_TYPE_CONVERSION, JS_TYPE_CONVERSION, java_type_converter, js_type_converter
from .data import BfclEntry, kind_of, language_of
from .tools import openai_name

PYTHON_TYPE_MAPPING: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
PYTHON_NESTED_TYPE_CHECK_LIST = ("array", "tuple")
NESTED_CONVERSION_TYPE_LIST = ("Array", "ArrayList", "array")

Reply = list[dict[str, Any]] | str | None  # the FC handler's model_responses


class CheckResult(BaseModel):
    """The verdict on one reply (`error_type` uses the leaderboard's names, e.g. `value_error:string`)."""

    valid: bool
    error: list[Any] = Field(default_factory=list)
    error_type: str = ""
    is_variable: bool = False


def _bad(error_type: str, *errors: Any) -> CheckResult:
    return CheckResult(valid=False, error=list(errors), error_type=error_type)


_OK = CheckResult(valid=True)


# -- the reply ------------------------------------------------------------------------


def reply_from_calls(calls: list[tuple[str, str | dict[str, Any]]], content: str | None) -> Reply:
    """The leaderboard's FC `model_responses`: `[{name: arguments_text}, ...]`, or the text when no call."""
    if calls:
        return [{name: args if isinstance(args, str) else json.dumps(args)} for name, args in calls]
    return content


class DecodeError(ValueError):
    """The reply is not a function call in the leaderboard's sense."""


def decode_reply(reply: Reply) -> list[Any]:
    """OpenAICompletionsHandler.decode_ast for FC models: `[{name: {arg: value}}]`.

    Text (or nothing) does not decode: iterating it fails in the leaderboard's
    handler, which the runner counts as "no function call". Arguments that are
    not JSON fail the same way.
    """
    if not isinstance(reply, list):
        if reply == "":
            return []  # iterating "" yields nothing: an empty decode, not a failure
        raise DecodeError("the reply is text, not function calls")
    decoded = []
    for item in reply:
        if not isinstance(item, dict) or not item:
            raise DecodeError("a call is not a {name: arguments} object")
        name = next(iter(item))
        try:
            decoded.append({name: json.loads(item[name])})
        except (TypeError, json.JSONDecodeError) as exc:
            raise DecodeError(f"arguments of {name!r} are not JSON: {exc}") from None
    return decoded


def is_function_calling_format(decoded: Any) -> bool:
    """`[{func: {param: value}}, ...]` (an empty list counts)."""
    if not isinstance(decoded, list):
        return False
    return all(
        isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict) for item in decoded
    )


def is_empty_output(decoded: Any) -> bool:
    """No call at all: not in call format, `[]`, or `[{}]`."""
    if not is_function_calling_format(decoded):
        return True
    return len(decoded) == 0 or (len(decoded) == 1 and len(decoded[0]) == 0)


# -- one entry ------------------------------------------------------------------------


def check_reply(entry: BfclEntry, reply: Reply) -> CheckResult:
    """The leaderboard's verdict on `reply` for a single-turn entry."""
    kind = kind_of(entry.category)
    if kind == "multi_turn":
        raise ValueError("multi-turn entries are not scored by the AST checker")
    if kind in ("irrelevance", "relevance"):
        return _check_relevance(kind, reply)
    try:
        decoded = decode_reply(reply)
    except DecodeError as exc:
        return _bad("ast_decoder:decoder_failed", f"Invalid syntax. Failed to decode AST. {exc}")
    if not is_function_calling_format(decoded):
        return _bad("ast_decoder:decoder_wrong_output_format", "Did not output in the specified format.")
    try:
        return ast_checker(entry.functions, decoded, entry.ground_truth or [], entry.category)
    except Exception as exc:
        return _bad("checker_error", f"{type(exc).__name__}: {exc}")


def _check_relevance(kind: str, reply: Reply) -> CheckResult:
    try:
        has_call = not is_empty_output(decode_reply(reply))
    except DecodeError:
        has_call = False
    if kind == "irrelevance":
        if has_call:
            return _bad(
                "irrelevance_error:decoder_success", "Valid syntax. Successfully decode AST when it should not."
            )
        return _OK
    if not has_call:
        return _bad("relevance_error:decoder_failed", "Invalid syntax. Failed to decode AST when it should have.")
    return _OK


def ast_checker(functions: list[dict[str, Any]], output: list[Any], possible: list[Any], category: str) -> CheckResult:
    language = language_of(category)
    if "parallel" in category:
        return parallel_function_checker_no_order(functions, output, possible, language)
    if "multiple" in category:
        return multiple_function_checker(functions, output, possible, language)
    if len(output) != 1:
        return _bad("simple_function_checker:wrong_count", "Wrong number of functions.")
    return simple_function_checker(functions[0], output[0], possible[0], language)


def find_description(functions: list[dict[str, Any]] | dict[str, Any], name: str) -> dict[str, Any] | None:
    if isinstance(functions, list):
        return next((doc for doc in functions if doc["name"] == name), None)
    return functions


def get_possible_answer_type(possible: list[Any]) -> type | None:
    return next((type(answer) for answer in possible if answer != ""), None)


def type_checker(
    param: str,
    value: Any,
    possible: list[Any],
    expected_description: str,
    expected_type: type,
    nested_type: type | None,
) -> CheckResult:
    # Only one level of nesting is checked, as in the leaderboard.
    answer_type = get_possible_answer_type(possible)
    # A possible answer of another type than declared (always str in the data) is a variable name.
    is_variable = answer_type is not None and answer_type != expected_type
    nested_failed = False
    if type(value) is expected_type:
        if nested_type is None:
            return CheckResult(valid=True, is_variable=is_variable)
        for item in possible:
            ok = True  # each value item must fit at least one possible answer's item type
            if type(item) is list:
                for value_item in value:
                    if not type_checker(param, value_item, item, str(nested_type), nested_type, None).valid:
                        ok = False
                        break
            if ok:
                return CheckResult(valid=True, is_variable=is_variable)
        nested_failed = True
    if answer_type is not None and type(value) is answer_type:
        if nested_failed:  # the leaderboard returns its failed nested verdict here, not a pass
            return CheckResult(
                valid=False,
                error=[f"Nested type checking failed for parameter {param!r}. Parameter value: {value!r}."],
                error_type="type_error:nested",
                is_variable=True,
            )
        return CheckResult(valid=True, is_variable=True)
    return _bad(
        "type_error:simple",
        f"Incorrect type for parameter {param!r}. Expected type {expected_description}, "
        f"got {type(value).__name__}. Parameter value: {value!r}.",
    )


def standardize_string(text: str) -> str:
    """Forgive spacing and punctuation: `April 1, 2024` == `april 1 2024`."""
    return re.sub(r"[ \,\.\/\-\_\*\^]", "", text).lower().replace("'", '"')


def string_checker(param: str, value: str, possible: list[Any]) -> CheckResult:
    allowed = [standardize_string(answer) for answer in possible if type(answer) is str]
    if standardize_string(value) not in allowed:
        return _bad(
            "value_error:string", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}."
        )
    return _OK


def _standardize_items(items: list[Any]) -> list[Any]:
    return [standardize_string(item) if type(item) is str else item for item in items]


def list_checker(param: str, value: list[Any], possible: list[Any]) -> CheckResult:
    allowed = [_standardize_items(answer) for answer in possible]  # "" (optional) standardizes to []
    if _standardize_items(list(value)) not in allowed:
        return _bad(
            "value_error:list/tuple", f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}."
        )
    return _OK


def dict_checker(param: str, value: dict[str, Any], possible_dicts: list[Any]) -> CheckResult:
    # Flat dicts only, as in the leaderboard (the data has no nested dict answers).
    result = _bad("dict_checker:unclear")
    for possible in possible_dicts:
        if possible == "":
            continue
        result = _bad("dict_checker:unclear")
        ok = True
        for key, item in value.items():
            if key not in possible:
                result = _bad("value_error:dict_key", f"Unexpected dict key parameter: '{key}'.")
                ok = False
                break
            standard = standardize_string(item) if type(item) is str else item
            if standard not in _standardize_items(possible[key]):
                result = _bad("value_error:dict_value", f"Invalid value for parameter {key!r}: {item!r}.")
                ok = False
                break
        for key, answers in possible.items():
            if key not in value and "" not in answers:
                result = _bad("value_error:dict_key", f"Missing dict key parameter: '{key}'.")
                ok = False
                break
        if ok:
            return _OK
    return result


def list_dict_checker(param: str, value: list[Any], possible_lists: list[Any]) -> CheckResult:
    # The dicts must come in the order of the possible answer.
    result = _bad("list_dict_checker:unclear")
    for possible in possible_lists:
        if len(value) != len(possible):
            result = _bad("value_error:list_dict_count", "Wrong number of dictionaries in the list.")
            continue
        ok = True
        for index in range(len(value)):
            result = dict_checker(param, value[index], [possible[index]])
            if not result.valid:
                ok = False
                break
        if ok:
            return _OK
    return result


def simple_function_checker(
    doc: dict[str, Any], output: dict[str, Any], possible_answer: dict[str, Any], language: str
) -> CheckResult:
    """The leaderboard's `simple_function_checker`, its steps named: the function's name, its
    required parameters, each given parameter (`_check_param`), then the optional ones left out."""
    possible = next(iter(possible_answer.values()))
    name = openai_name(doc["name"])  # the name the model was offered (dots -> underscores)
    param_details = doc["parameters"]["properties"]
    required = doc["parameters"].get("required", [])

    if name not in output:
        return _bad("simple_function_checker:wrong_func_name", f"Function name {name!r} not found in model output.")
    params = output[name]

    for param in required:
        if param not in params:
            return _bad("simple_function_checker:missing_required", f"Missing required parameter: {param!r}.")

    for param, value in params.items():
        if param not in param_details or param not in possible:
            return _bad("simple_function_checker:unexpected_param", f"Unexpected parameter: {param!r}.")
        result = _check_param(param, value, param_details[param], possible[param], language)
        if not result.valid:
            return result

    for param in possible:
        if param not in params and "" not in possible[param]:
            return _bad(
                "simple_function_checker:missing_optional",
                f"Optional parameter {param!r} not provided and not marked as optional.",
            )
    return _OK


def _check_param(param: str, value: Any, detail: dict[str, Any], answers: list[Any], language: str) -> CheckResult:
    """One given parameter against its possible answers: converted from the language's source
    text, type-checked, then compared by the checker of its type (or as a plain value)."""
    converted = _converted(param, value, detail, language)
    if isinstance(converted, CheckResult):
        return converted
    value, expected_type, nested_type = converted
    declared = detail["type"]
    if declared == "tuple" and type(value) is tuple:
        value = list(value)
    if language == "python" and declared == "float" and type(value) is int:
        value = float(value)  # Python's int -> float promotion is accepted

    typed = type_checker(param, value, answers, declared, expected_type, nested_type)
    if not typed.valid:
        return typed
    if not typed.is_variable:  # a variable is compared as a plain value below
        checker = _value_checker(expected_type, nested_type)
        if checker is not None:
            return checker(param, value, answers)
    if value not in answers:
        return _bad(
            "value_error:others",
            f"Invalid value for parameter {param!r}: {value!r}. Expected one of {answers}.",
        )
    return _OK


def _converted(
    param: str, value: Any, detail: dict[str, Any], language: str
) -> tuple[Any, type, type | None] | CheckResult:
    """The value as it is compared, its expected type and its items' type (None for a flat
    type). Java and JavaScript values are source strings, converted here; one that is not a
    string fails (`type_error:java`, `type_error:js`)."""
    declared = detail["type"]
    if language in ("java", "javascript"):
        if language == "java":
            conversion, converter, code = JAVA_TYPE_CONVERSION, java_type_converter, "java"
        else:
            conversion, converter, code = JS_TYPE_CONVERSION, js_type_converter, "js"
        expected_type = conversion[declared]
        if type(value) is not str:
            return _bad(f"type_error:{code}", f"Incorrect type for parameter {param!r}. Expected type String.")
        if declared in NESTED_CONVERSION_TYPE_LIST:
            item_type = detail["items"]["type"]
            return converter(value, declared, item_type), expected_type, conversion[item_type]
        return converter(value, declared), expected_type, None
    expected_type = PYTHON_TYPE_MAPPING[declared]
    if declared in PYTHON_NESTED_TYPE_CHECK_LIST:
        return value, expected_type, PYTHON_TYPE_MAPPING[detail["items"]["type"]]
    return value, expected_type, None


def _value_checker(
    expected_type: type, nested_type: type | None
) -> Callable[[str, Any, list[Any]], CheckResult] | None:
    """The checker that compares a value of this type with its possible answers; None: compared
    as a plain value (`value in answers`)."""
    if expected_type is dict:
        return dict_checker
    if expected_type is list and nested_type is dict:
        return list_dict_checker
    if expected_type is str:
        return string_checker
    if expected_type is list:
        return list_checker
    return None


def parallel_function_checker_no_order(
    functions: list[dict[str, Any]], output: list[Any], possible: list[Any], language: str
) -> CheckResult:
    if len(output) != len(possible):
        return _bad("parallel_function_checker_no_order:wrong_count", "Wrong number of functions.")
    matched: list[int] = []
    # Greedy, answer by answer: each takes the first unused call that passes (the leaderboard's order).
    for answer_index, answer in enumerate(possible):
        doc = find_description(functions, next(iter(answer)))
        result = _OK
        errors: list[Any] = []
        for index in range(len(output)):
            if index in matched:
                continue
            result = simple_function_checker(doc, output[index], answer, language)  # type: ignore[arg-type]
            if result.valid:
                matched.append(index)
                break
            errors.append(
                {f"Model Result Index {index}": {"sub_error": result.error, "sub_error_type": result.error_type}}
            )
        if not result.valid:
            return CheckResult(
                valid=False,
                error=[f"Could not find a matching function for index {answer_index} of possible answers.", *errors],
                error_type="parallel_function_checker_no_order:cannot_find_match",
            )
    return _OK


def multiple_function_checker(
    functions: list[dict[str, Any]], output: list[Any], possible: list[Any], language: str
) -> CheckResult:
    if len(output) != len(possible):
        return _bad("multiple_function_checker:wrong_count", "Wrong number of functions.")
    doc = find_description(functions, next(iter(possible[0])))
    return simple_function_checker(doc, output[0], possible[0], language)  # type: ignore[arg-type]
