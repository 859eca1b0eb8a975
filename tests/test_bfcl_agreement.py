"""Our BFCL scoring and tool conversion agree with the leaderboard's own code (bfcl-eval, installed --no-deps).

The reference is bfcl-eval's code as shipped, run in this process:
- `bfcl_eval.eval_checker.ast_eval.ast_checker.ast_checker` and `bfcl_eval.utils`
  (data loading, `is_function_calling_format_output`, `is_empty_output`, the
  language hints) import with one stand-in: `bfcl_eval.constants.model_config`,
  whose real module imports every vendor SDK; the checker reads only
  `underscore_to_dot` from it, which is True for OpenAI-compatible FC models;
- the runner's per-entry functions (`_evaluate_single_ast_entry`,
  `_evaluate_single_relevance_entry` of eval_runner.py), the FC handler's
  `decode_ast` (openai_completion.py) and the tool conversion
  (`convert_to_tool`, `_cast_to_openai_type` of model_handler/utils.py) live in
  modules whose imports need tree-sitter and the SDKs, so their function
  definitions are taken from the installed source files with `ast` and run
  unchanged against the real imports above.

Replies: for every entry of every single-turn category, a right one built from
the possible answers and wrong ones made by perturbing names, values, types,
missing and extra arguments, call order and count, plus text and broken-JSON
replies. Agreement must be >= 99.5%; every disagreement is listed in the
failure message (there are none with bfcl-eval 2026.3.23).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from judges.bfcl import SINGLE_TURN, check_reply, data_dir, load_category, to_openai_tools
from judges.bfcl.checker import Reply
from tests.fixtures.bfcl_policy import right_arguments

MODEL = "mcpgym-fc"  # any name: the stand-in config answers for it


# -- the reference ------------------------------------------------------------------


def _functions_from_source(path: Path, names: set[str], namespace: dict[str, Any], cls: str | None = None) -> None:
    """Exec the named top-level (or `cls` method) function definitions of a source file into `namespace`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = tree.body
    if cls is not None:
        body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls).body
    chosen = [node for node in body if isinstance(node, ast.FunctionDef) and node.name in names]
    assert {node.name for node in chosen} == names, f"not found in {path}: {names - {n.name for n in chosen}}"
    module = ast.Module(body=chosen, type_ignores=[])
    exec(compile(module, str(path), "exec"), namespace)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    # bfcl-eval makes result/score/lock folders under BFCL_PROJECT_ROOT on import: keep them out of site-packages.
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(tmp_path_factory.mktemp("bfcl_root")))
    stand_in = types.ModuleType("bfcl_eval.constants.model_config")
    stand_in.MODEL_CONFIG_MAPPING = {MODEL: types.SimpleNamespace(underscore_to_dot=True)}  # type: ignore[attr-defined]
    sys.modules.setdefault("bfcl_eval.constants.model_config", stand_in)

    from bfcl_eval import utils
    from bfcl_eval.constants import enums, type_mappings
    from bfcl_eval.eval_checker.ast_eval import ast_checker

    root = data_dir().parent
    namespace: dict[str, Any] = {
        **vars(utils),
        "ast_checker": ast_checker.ast_checker,
        "Language": enums.Language,
        "ReturnFormat": enums.ReturnFormat,
        "ModelStyle": enums.ModelStyle,
        "GORILLA_TO_OPENAPI": type_mappings.GORILLA_TO_OPENAPI,
        "json": json,
        "copy": copy,
        "re": __import__("re"),
    }
    _functions_from_source(
        root / "eval_checker" / "eval_runner.py",
        {"_evaluate_single_ast_entry", "_evaluate_single_relevance_entry"},
        namespace,
    )
    _functions_from_source(root / "model_handler" / "utils.py", {"convert_to_tool", "_cast_to_openai_type"}, namespace)
    _functions_from_source(
        root / "model_handler" / "api_inference" / "openai_completion.py",
        {"decode_ast"},
        namespace,
        "OpenAICompletionsHandler",
    )
    handler = types.SimpleNamespace(is_fc_model=True)
    handler.decode_ast = types.MethodType(namespace["decode_ast"], handler)
    return types.SimpleNamespace(ns=namespace, utils=utils, handler=handler, enums=enums)


def reference_verdict(
    ref: types.SimpleNamespace, category: str, prompt: dict[str, Any], answer: Any, reply: Reply
) -> bool:
    """The leaderboard's verdict through its ast_file_runner / relevance_file_runner per-entry code."""
    ns, utils, enums = ref.ns, ref.utils, ref.enums
    if utils.is_relevance_or_irrelevance(category):
        result = ns["_evaluate_single_relevance_entry"](ref.handler, prompt["id"], reply, prompt, MODEL, category)
        return bool(result["valid"])
    if utils.is_java(category):
        language, fmt = enums.Language.JAVA, enums.ReturnFormat.JAVA
    elif utils.is_js(category):
        language, fmt = enums.Language.JAVASCRIPT, enums.ReturnFormat.JAVASCRIPT
    else:
        language, fmt = enums.Language.PYTHON, enums.ReturnFormat.PYTHON
    try:
        result = ns["_evaluate_single_ast_entry"](
            ref.handler, prompt["id"], reply, answer, prompt, MODEL, category, language=language, return_format=fmt
        )
    except Exception:
        return False
    return bool(result["valid"])


# -- replies ------------------------------------------------------------------------


def _wrong_value(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + " zz"
    if isinstance(value, list):
        return [*value, value[0] if value else 1]
    if isinstance(value, dict):
        return {**value, "unexpected_key": 1}
    return "x"


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return 1 if not value.isdigit() else int(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value)
    return None


def _wrong_item_type(value: Any) -> Any:
    """A list whose items have another type (the nested type check)."""
    if isinstance(value, list) and value:
        return ["7" if not isinstance(item, str) else 7 for item in value]
    return value


def _variant_case(value: Any) -> Any:
    """A string the leaderboard forgives (case, spaces and punctuation)."""
    return value.upper().replace(" ", "") + "." if isinstance(value, str) else value


def _reply(calls: list[tuple[str, Any]]) -> list[dict[str, str]]:
    return [{name: json.dumps(args)} for name, args in calls]


def replies_for(entry: Any, language: str) -> list[Reply]:
    """Right and perturbed replies for one entry."""
    docs = {doc["name"]: doc for doc in entry.functions}
    rename = lambda name: name.replace(".", "_")  # noqa: E731 - the name the model was offered
    out: list[Reply] = ["I cannot do that with these tools.", "", None, [], [{"x": '{"a": '}]]
    if not entry.ground_truth:  # irrelevance / relevance: a call to an offered function
        for doc in entry.functions[:2]:
            required = doc["parameters"].get("required", [])
            out.append(_reply([(rename(doc["name"]), {p: "x" for p in required})]))
            out.append([{rename(doc["name"]): "[1, 2]"}])
        return out
    for optional in (True, False):
        calls = [
            (rename(name), right_arguments(docs[name], possible, language, optional=optional))
            for answer in entry.ground_truth
            for name, possible in answer.items()
        ]
        out.append(_reply(calls))
        if not calls:
            continue
        first_name, first_args = calls[0]
        out.append(_reply([(first_name + "_x", first_args), *calls[1:]]))  # wrong name
        out.append(_reply([(first_name.replace("_", "."), first_args), *calls[1:]]))  # dotted name
        out.append(_reply(list(reversed(calls))))  # order of parallel calls
        out.append(_reply([*calls, calls[0]]))  # one call too many
        out.append(_reply(calls[:-1]))  # one call too few
        out.append(_reply([*calls[1:], (first_name, {**first_args, "extra_arg": 1})]))  # extra argument
        out.append([{first_name: json.dumps(first_args)[:-1]}, *_reply(calls[1:])])  # broken JSON
        for param in list(first_args):
            for change in (_wrong_value, _wrong_type, _wrong_item_type, _variant_case):
                out.append(_reply([(first_name, {**first_args, param: change(first_args[param])}), *calls[1:]]))
            missing = {k: v for k, v in first_args.items() if k != param}
            out.append(_reply([(first_name, missing), *calls[1:]]))
            if isinstance(first_args[param], float) and first_args[param].is_integer():
                out.append(_reply([(first_name, {**first_args, param: int(first_args[param])}), *calls[1:]]))
            if isinstance(first_args[param], int) and not isinstance(first_args[param], bool):
                out.append(_reply([(first_name, {**first_args, param: float(first_args[param])}), *calls[1:]]))
            if isinstance(first_args[param], list) and len(first_args[param]) > 1:
                out.append(_reply([(first_name, {**first_args, param: first_args[param][::-1]}), *calls[1:]]))
    return out


# -- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize("category", SINGLE_TURN)
def test_checker_agrees_with_the_leaderboard(reference: types.SimpleNamespace, category: str) -> None:
    utils = reference.utils
    prompts = utils.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
    answers = None if utils.is_relevance_or_irrelevance(category) else utils.load_ground_truth_entry(category)
    ours = load_category(category)
    assert [e.id for e in ours] == [p["id"] for p in prompts]
    language = "java" if utils.is_java(category) else "javascript" if utils.is_js(category) else "python"
    total = agree = right = 0
    disagreements: list[str] = []
    for index, entry in enumerate(ours):
        answer = answers[index]["ground_truth"] if answers is not None else None
        for reply in replies_for(entry, language):
            theirs = reference_verdict(reference, category, prompts[index], answer, reply)  # neither mutates its input
            mine = check_reply(entry, reply).valid
            total += 1
            right += theirs
            if theirs == mine:
                agree += 1
            else:
                disagreements.append(f"{entry.id}: leaderboard={theirs} ours={mine} reply={json.dumps(reply)[:300]}")
    assert total > 5 * len(ours)
    assert right > 0 and right < total  # both verdicts are exercised
    rate = agree / total
    print(f"{category}: {agree}/{total} agree ({rate:.4%}), {right} right replies")
    assert rate >= 0.995, "\n".join(disagreements[:20])
    assert not disagreements, "\n".join(disagreements[:20])


@pytest.mark.parametrize("category", SINGLE_TURN)
def test_tools_match_the_leaderboard_conversion(reference: types.SimpleNamespace, category: str) -> None:
    """Every entry's tools equal what bfcl-eval sends an OpenAI-compatible FC model (hints + convert_to_tool)."""
    prompts = reference.utils.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=True)
    style = reference.enums.ModelStyle.OPENAI_COMPLETIONS
    mapping = reference.ns["GORILLA_TO_OPENAPI"]
    for entry, prompt in zip(load_category(category), prompts, strict=True):
        assert to_openai_tools(entry.functions, category) == reference.ns["convert_to_tool"](
            prompt["function"], mapping, style
        )
