"""BFCL pieces on their own: tool conversion per BFCL type, the checker on hand-made replies, the data."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from judges.bfcl import (
    BfclEntry,
    BfclNotInstalled,
    check_reply,
    data,
    expand_categories,
    load_category,
    reply_from_calls,
    to_openai_tools,
)
from judges.bfcl.scores import CategoryScore, leaderboard_summary

# -- tools ---------------------------------------------------------------------------


def _doc(properties: dict[str, Any], name: str = "tool.do") -> dict[str, Any]:
    return {
        "name": name,
        "description": "Does it.",
        "parameters": {"type": "dict", "properties": properties, "required": list(properties)[:1]},
    }


def _params(category: str, properties: dict[str, Any]) -> dict[str, Any]:
    tools = to_openai_tools([_doc(properties)], category)
    assert len(tools) == 1 and tools[0]["type"] == "function"
    function = tools[0]["function"]
    assert function["name"] == "tool_do"  # OpenAI names have no dots
    assert function["parameters"]["type"] == "object"  # BFCL's "dict"
    return function["parameters"]["properties"]


@pytest.mark.parametrize(
    ("bfcl_type", "schema_type"),
    [
        ("string", "string"),
        ("integer", "integer"),
        ("number", "number"),
        ("float", "number"),
        ("double", "number"),
        ("boolean", "boolean"),
        ("bool", "boolean"),
        ("array", "array"),
        ("list", "array"),
        ("tuple", "array"),
        ("dict", "object"),
        ("object", "object"),
        ("any", "string"),  # what the leaderboard sends (its checker wants a string for `any`)
        ("long", "integer"),
        ("short", "integer"),
        ("byte", "integer"),
        ("Bigint", "integer"),
        ("char", "string"),
        ("String", "string"),
        ("HashMap", "object"),
        ("ArrayList", "array"),
        ("Queue", "array"),
        ("Some.UnknownType", "string"),
    ],
)
def test_each_bfcl_type_becomes_a_json_schema_type(bfcl_type: str, schema_type: str) -> None:
    props = _params("simple_python", {"p": {"type": bfcl_type, "description": "d"}})
    assert props["p"]["type"] == schema_type


def test_nested_types_floats_and_defaults() -> None:
    props = _params(
        "simple_python",
        {
            "ratio": {"type": "float", "description": "r", "default": 0.5},
            "points": {"type": "array", "description": "p", "items": {"type": "tuple", "items": {"type": "float"}}},
            "people": {
                "type": "array",
                "description": "q",
                "items": {"type": "dict", "properties": {"age": {"type": "integer", "description": "a"}}},
            },
            "options": {"type": "dict", "description": "o", "properties": {"x": {"type": "float", "description": "x"}}},
            "untyped": {"description": "u"},
        },
    )
    assert props["ratio"] == {
        "type": "number",
        "format": "float",
        "description": "r This is a float type value.",
        "default": 0.5,
    }
    assert props["points"]["items"] == {"type": "array", "items": {"type": "number"}}
    assert props["people"]["items"]["type"] == "object"
    assert props["people"]["items"]["properties"]["age"]["type"] == "integer"
    assert props["options"]["properties"]["x"]["type"] == "number"
    assert props["untyped"]["type"] == "string"


def test_language_hints_java_and_javascript() -> None:
    python = to_openai_tools([_doc({"a": {"type": "integer", "description": "d"}})], "simple_python")
    assert python[0]["function"]["description"].endswith("Note that the provided function is in Python 3 syntax.")
    java = _params("simple_java", {"xs": {"type": "ArrayList", "description": "d", "items": {"type": "String"}}})
    assert java["xs"]["type"] == "string" and "items" not in java["xs"]
    assert "Java ArrayList type parameter in string representation" in java["xs"]["description"]
    assert "The list elements are of type String" in java["xs"]["description"]
    js = _params(
        "simple_javascript",
        {"cfg": {"type": "dict", "description": "d", "properties": {"k": {"type": "String", "description": "k"}}}},
    )
    assert js["cfg"]["type"] == "string" and "properties" not in js["cfg"]
    assert "JavaScript dict type parameter" in js["cfg"]["description"]


def test_conversion_leaves_the_entry_untouched() -> None:
    entry = load_category("simple_java", limit=1)[0]
    before = json.dumps(entry.functions, sort_keys=True)
    to_openai_tools(entry.functions, entry.category)
    assert json.dumps(entry.functions, sort_keys=True) == before


# -- the checker on hand-made entries -------------------------------------------------

AREA = {
    "name": "geometry.area",
    "description": "Area of a shape.",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer", "description": "b"},
            "scale": {"type": "float", "description": "s"},
            "unit": {"type": "string", "description": "u"},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "t"},
            "opts": {"type": "dict", "properties": {}, "description": "o"},
            "exact": {"type": "boolean", "description": "e"},
        },
        "required": ["base"],
    },
}
AREA_ANSWER = {
    "geometry.area": {
        "base": [10],
        "scale": [2.0, ""],
        "unit": ["square meters", "m2", ""],
        "tags": [["a b", "c"], ""],
        "opts": [{"mode": ["fast"], "level": [1, ""]}, ""],
        "exact": [True, ""],
    }
}


def _entry(category: str, functions: list[dict[str, Any]], answers: list[dict[str, Any]] | None) -> BfclEntry:
    return BfclEntry(id=f"{category}_x", category=category, question=[[]], functions=functions, ground_truth=answers)


def _calls(*calls: tuple[str, Any]) -> list[dict[str, str]]:
    return reply_from_calls([(name, args) for name, args in calls], None)  # type: ignore[return-value]


SIMPLE = _entry("simple_python", [AREA], [AREA_ANSWER])


@pytest.mark.parametrize(
    ("args", "valid", "error_type"),
    [
        ({"base": 10}, True, ""),
        ({"base": 10, "scale": 2}, True, ""),  # an int is fine for a float
        ({"base": 10, "scale": 2.0, "unit": "Square-Meters"}, True, ""),  # case and punctuation are forgiven
        ({"base": 10, "unit": "M2"}, True, ""),
        ({"base": 10, "tags": ["A B", "c"]}, True, ""),
        ({"base": 10, "tags": ["c", "a b"]}, False, "value_error:list/tuple"),  # list order matters
        ({"base": 10, "opts": {"mode": "FAST"}}, True, ""),  # an optional dict key may be left out
        ({"base": 10, "opts": {"mode": "slow"}}, False, "value_error:dict_value"),
        ({"base": 10, "opts": {"level": 1}}, False, "value_error:dict_key"),  # a required dict key is missing
        ({"base": 10, "exact": True}, True, ""),
        ({"base": 10, "exact": 1}, False, "type_error:simple"),
        ({"base": 10.0}, False, "type_error:simple"),  # a float is not an int
        ({"base": True}, False, "type_error:simple"),  # nor is a bool
        ({"base": "10"}, False, "type_error:simple"),
        ({"base": 11}, False, "value_error:others"),
        ({"base": 10, "unit": "feet"}, False, "value_error:string"),
        ({"scale": 2.0}, False, "simple_function_checker:missing_required"),
        ({"base": 10, "color": "red"}, False, "simple_function_checker:unexpected_param"),
    ],
)
def test_simple_arguments(args: dict[str, Any], valid: bool, error_type: str) -> None:
    result = check_reply(SIMPLE, _calls(("geometry_area", args)))
    assert (result.valid, result.error_type) == (valid, error_type), result.error


def test_simple_names_counts_and_text() -> None:
    assert check_reply(SIMPLE, _calls(("geometry.area", {"base": 10}))).error_type.endswith("wrong_func_name")
    two = _calls(("geometry_area", {"base": 10}), ("geometry_area", {"base": 10}))
    assert check_reply(SIMPLE, two).error_type == "simple_function_checker:wrong_count"
    assert check_reply(SIMPLE, "The area is 20.").error_type == "ast_decoder:decoder_failed"
    assert check_reply(SIMPLE, [{"geometry_area": '{"base": '}]).error_type == "ast_decoder:decoder_failed"
    assert check_reply(SIMPLE, [{"geometry_area": "[10]"}]).error_type == "ast_decoder:decoder_wrong_output_format"


def test_a_required_param_that_the_answer_lists_as_optional_must_still_be_given() -> None:
    entry = _entry(
        "simple_python",
        [AREA],
        [{"geometry.area": {"base": [10], "unit": ["m2"]}}],  # unit has no "" here: it must be there
    )
    assert check_reply(entry, _calls(("geometry_area", {"base": 10, "unit": "m2"}))).valid
    result = check_reply(entry, _calls(("geometry_area", {"base": 10})))
    assert result.error_type == "simple_function_checker:missing_optional"


WEATHER = {
    "name": "weather",
    "description": "Weather.",
    "parameters": {
        "type": "dict",
        "properties": {"city": {"type": "string", "description": "c"}},
        "required": ["city"],
    },
}
TIME = {
    "name": "time_in",
    "description": "Time.",
    "parameters": {
        "type": "dict",
        "properties": {"city": {"type": "string", "description": "c"}},
        "required": ["city"],
    },
}


def test_nested_item_types() -> None:
    doc = {
        "name": "tagger",
        "description": "d",
        "parameters": {
            "type": "dict",
            "properties": {"names": {"type": "array", "items": {"type": "string"}, "description": "n"}},
            "required": ["names"],
        },
    }
    required = _entry("simple_python", [doc], [{"tagger": {"names": [["a", "b"]]}}])
    assert check_reply(required, _calls(("tagger", {"names": ["A", "b"]}))).valid
    assert check_reply(required, _calls(("tagger", {"names": [1, 2]}))).error_type == "type_error:nested"
    # with "" among the answers the leaderboard's nested check passes anything; the value check still fails
    optional = _entry("simple_python", [doc], [{"tagger": {"names": [["a", "b"], ""]}}])
    assert check_reply(optional, _calls(("tagger", {"names": [1, 2]}))).error_type == "value_error:list/tuple"


def test_parallel_calls_match_in_any_order() -> None:
    entry = _entry("parallel", [WEATHER], [{"weather": {"city": ["Paris"]}}, {"weather": {"city": ["Rome"]}}])
    assert check_reply(entry, _calls(("weather", {"city": "Rome"}), ("weather", {"city": "paris"}))).valid
    assert not check_reply(entry, _calls(("weather", {"city": "Rome"}), ("weather", {"city": "Rome"}))).valid
    short = check_reply(entry, _calls(("weather", {"city": "Rome"})))
    assert short.error_type == "parallel_function_checker_no_order:wrong_count"


def test_multiple_checks_the_chosen_function() -> None:
    entry = _entry("multiple", [WEATHER, TIME], [{"time_in": {"city": ["Oslo"]}}])
    assert check_reply(entry, _calls(("time_in", {"city": "Oslo"}))).valid
    assert check_reply(entry, _calls(("weather", {"city": "Oslo"}))).error_type.endswith("wrong_func_name")


def test_irrelevance_and_relevance() -> None:
    irrelevant = _entry("live_irrelevance", [WEATHER], None)
    assert check_reply(irrelevant, "I can't tell you that.").valid
    assert check_reply(irrelevant, None).valid
    assert check_reply(irrelevant, [{"weather": '{"city": '}]).valid  # not JSON: no call
    assert not check_reply(irrelevant, _calls(("weather", {"city": "Oslo"}))).valid
    relevant = _entry("live_relevance", [WEATHER], None)
    assert check_reply(relevant, _calls(("weather", {"city": "anything"}))).valid
    assert not check_reply(relevant, "No call.").valid


def test_java_and_javascript_values_are_parsed_from_text() -> None:
    java_doc = {
        "name": "Util.run",
        "description": "d",
        "parameters": {
            "type": "dict",
            "properties": {
                "count": {"type": "long", "description": "c"},
                "flag": {"type": "boolean", "description": "f"},
                "names": {"type": "ArrayList", "items": {"type": "String"}, "description": "n"},
            },
            "required": ["count"],
        },
    }
    java = _entry(
        "simple_java", [java_doc], [{"Util.run": {"count": [5], "flag": [True, ""], "names": [["a", "b"], ""]}}]
    )
    right = {"count": "5L", "flag": "true", "names": 'new ArrayList<>(Arrays.asList("a", "b"))'}
    assert check_reply(java, _calls(("Util_run", right))).valid
    assert not check_reply(java, _calls(("Util_run", {"count": "5"}))).valid  # a long needs its L
    assert check_reply(java, _calls(("Util_run", {"count": 5}))).error_type == "type_error:java"
    js_doc = {
        "name": "pick",
        "description": "d",
        "parameters": {
            "type": "dict",
            "properties": {"ids": {"type": "array", "items": {"type": "integer"}, "description": "i"}},
            "required": ["ids"],
        },
    }
    js = _entry("simple_javascript", [js_doc], [{"pick": {"ids": [[1, 2]]}}])
    assert check_reply(js, _calls(("pick", {"ids": "[1, 2]"}))).valid
    assert not check_reply(js, _calls(("pick", {"ids": "[2, 1]"}))).valid


def test_real_entry_ground_truth_and_a_wrong_value() -> None:
    entry = load_category("simple_python", limit=1)[0]
    assert entry.ground_truth == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    assert check_reply(entry, _calls(("calculate_triangle_area", {"base": 10, "height": 5}))).valid
    assert not check_reply(entry, _calls(("calculate_triangle_area", {"base": 10, "height": 6}))).valid


# -- data and aggregates --------------------------------------------------------------


def test_category_sizes_and_groups() -> None:
    sizes = {name: data.category_size(name) for name in data.ALL_CATEGORIES}
    assert sizes["simple_python"] == 400 and sizes["simple_java"] == 100 and sizes["simple_javascript"] == 50
    assert sizes["live_multiple"] == 1053 and sizes["live_irrelevance"] == 884 and sizes["multi_turn_base"] == 200
    assert expand_categories("simple,multiple,simple_python") == [
        "simple_python",
        "simple_java",
        "simple_javascript",
        "multiple",
    ]
    with pytest.raises(data.UsageError, match="unknown BFCL category 'nope'"):
        expand_categories("simple,nope")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    data.data_dir.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    try:
        with pytest.raises(BfclNotInstalled, match=r"pip install --no-deps bfcl-eval==2026\.3\.23"):
            data.data_dir()
    finally:
        monkeypatch.undo()
        data.data_dir.cache_clear()


def test_leaderboard_aggregation() -> None:
    scores = {
        "simple_python": CategoryScore(category="simple_python", correct=3, total=4),
        "simple_java": CategoryScore(category="simple_java", correct=1, total=2),
        "simple_javascript": CategoryScore(category="simple_javascript", correct=0, total=2),
        "multiple": CategoryScore(category="multiple", correct=1, total=1),
        "parallel": CategoryScore(category="parallel", correct=1, total=2),
        "parallel_multiple": CategoryScore(category="parallel_multiple", correct=0, total=1),
        "live_simple": CategoryScore(category="live_simple", correct=9, total=10),
        "live_multiple": CategoryScore(category="live_multiple", correct=0, total=30),
        "irrelevance": CategoryScore(category="irrelevance", correct=1, total=1),
    }
    summary = leaderboard_summary(scores, data.category_size)
    simple = (0.75 + 0.5 + 0.0) / 3
    assert summary["non_live_simple"].accuracy == pytest.approx(simple)
    assert summary["non_live"].accuracy == pytest.approx((simple + 1 + 0.5 + 0) / 4)
    assert summary["non_live"].complete
    # live: weighted by count; the missing live_parallel(_multiple) count as 0 with their full size
    assert summary["live"].accuracy == pytest.approx(9 / (10 + 30 + 16 + 24))
    assert not summary["live"].complete and summary["live"].display() == "N/A"
    assert summary["irrelevance"].accuracy == pytest.approx(0.5)  # live_irrelevance missing -> 0
    assert summary["overall"].display() == "N/A"
