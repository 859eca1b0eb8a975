"""The leaderboard's execution of call text, without `eval`: the same results, and nothing else runs.

BFCL's `multi_turn_utils.execute_multi_turn_func_call` prefixes every API function name in a call
text with the name of its instance and `eval`s the text in its module's globals, so whatever a
call text says runs there (builtins, imports, the executor itself). Here a call text is parsed
(`ast`), and only one shape is executed: a call of a public method of the scenario's API
instances with literal arguments (`cd(folder='x')`, `sort('a.pdf')`). The method is found on
the instances, the arguments are `ast.literal_eval`ed and the bound method is called directly.
Any other text answers an error result and touches nothing.

For the calls the APIs can answer, everything else is the leaderboard's, step by step, so
scores do not move (tests/test_bfcl_multi_turn.py checks results and states against the wheel's
executor on the whole ground truth):

- instances: made on the first execution, from a deep copy of the scenario's `initial_config`
  (stateless classes take none), then kept between steps and user turns (the leaderboard keeps
  them in its module globals under `{model_name}_{entry id}_{class}_instance`);
- names: every public method of the involved instances (`inspect.getmembers`, a later class
  winning a shared name), prefixed by the same regular expression, which also rewrites
  `name(` inside string literals, as the leaderboard does;
- the leaderboard's refusal of `kill`, `exit`, `quit`, `remove`, `unlink`, `popen`, `Popen`,
  `run`, with its message;
- results: a string as is, a dict as JSON (else `str()`), anything else `str()`; an exception
  as `Error during execution: <message>`, syntax errors with `eval`'s own message.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from typing import Any

from . import data

# multi_turn_utils: calls the leaderboard refuses before its eval.
BLOCKED = ("kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run")
# multi_turn_utils._process_method_calls: a function name is an identifier before "(".
_FUNCTION_NAME = re.compile(r"\b([a-zA-Z_]\w*)\s*(?=\()")
ERROR_PREFIX = "Error during execution: "


class NotExecutable(Exception):
    """A call text of a shape that is never executed (an error result, as a failed call is)."""


def format_result(result: Any) -> str:
    """A method's return value as the leaderboard's execution turns it into the tool message."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except Exception:  # an object inside: the leaderboard falls back to str() the same way
            return str(result)
    return str(result)


def instance_name(model_name: str, entry_id: str, class_name: str) -> str:
    """The global the leaderboard keeps an instance under (it shows in rewritten string literals)."""
    return re.sub(r"[-./:]", "_", f"{model_name}_{entry_id}_{class_name}_instance")


class ApiInstances:
    """One execution's API instances (the model's, or the ground truth's), made at the first
    `execute` and kept for every later step and user turn of the same check."""

    def __init__(
        self,
        entry_id: str,
        initial_config: dict[str, Any],
        involved_classes: list[str],
        *,
        long_context: bool,
        model_name: str = "mcpgym_eval",
    ) -> None:
        unknown = [name for name in involved_classes if name not in data.API_CLASSES]
        if unknown:
            raise ValueError(f"unknown API classes {unknown}")
        self.entry_id = entry_id
        self.initial_config = initial_config
        self.involved_classes = list(involved_classes)
        self.long_context = long_context
        self.model_name = model_name
        self._by_class: dict[str, Any] = {}
        self._by_name: dict[str, Any] = {}  # instance name -> instance
        self._method_owner: dict[str, str] = {}  # public method -> instance name

    @property
    def started(self) -> bool:
        return bool(self._by_class)

    @property
    def instances(self) -> dict[str, Any]:
        """Class name -> its instance (empty before the first `execute`, as the leaderboard's)."""
        return dict(self._by_class)

    def _start(self) -> None:
        for class_name in self.involved_classes:
            instance = data.new_instance(class_name, self.initial_config, long_context=self.long_context)
            name = instance_name(self.model_name, self.entry_id, class_name)
            self._by_class[class_name] = instance
            self._by_name[name] = instance
            for method_name, _ in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self._method_owner[method_name] = name

    def execute(self, calls: list[str]) -> list[str]:
        """Each call text's result, in order, on these instances."""
        if not self.started:
            self._start()
        return [self._execute_one(text) for text in calls]

    def _prefixed(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            owner = self._method_owner.get(name)
            return f"{owner}.{name}" if owner is not None else name

        return _FUNCTION_NAME.sub(replace, text)

    def _execute_one(self, text: str) -> str:
        prefixed = self._prefixed(text)
        try:
            called = prefixed.split("(")[0] if "(" in prefixed else prefixed
            if "." in called:
                called = called.split(".")[1]
            if called in BLOCKED:
                raise Exception(f"Function call {called} is not allowed.")
            return format_result(self._call(prefixed))
        except Exception as exc:
            return f"{ERROR_PREFIX}{exc}"

    def _call(self, text: str) -> Any:
        """Call what `text` names, if it is one of the instances' methods with literal arguments."""
        source = text.lstrip(" \t")  # as eval() strips a string's leading blanks
        tree = ast.parse(source, filename="<string>", mode="eval")
        compile(tree, "<string>", "eval")  # eval's own errors for what parses but does not compile; runs nothing
        node = tree.body
        if not isinstance(node, ast.Call):
            raise NotExecutable(f"not a function call: {_short(text)}")
        method = self._method(node.func)
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(kw.arg is None for kw in node.keywords):
            raise NotExecutable(f"* and ** arguments are not executed: {_short(text)}")
        try:
            args = [ast.literal_eval(arg) for arg in node.args]
            kwargs = {str(kw.arg): ast.literal_eval(kw.value) for kw in node.keywords}
        except ValueError:
            raise NotExecutable(f"arguments must be literals: {_short(text)}") from None
        return method(*args, **kwargs)

    def _method(self, func: ast.expr) -> Any:
        if isinstance(func, ast.Name):  # not one of the instances' methods: as eval of an undefined name
            raise NameError(f"name '{func.id}' is not defined")
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and self._method_owner.get(func.attr) == func.value.id
        ):
            return getattr(self._by_name[func.value.id], func.attr)
        raise NotExecutable(f"not a call of one of the scenario's API functions: {_short(ast.unparse(func))}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
