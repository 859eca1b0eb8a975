"""Attacks on mcpgym through a policy's tool calls in the BFCL multi-turn env: each one must fail.

The leaderboard's own checker `eval`s call text in the process that scores it, so a call the
model names `open`, or `execute_multi_turn_func_call` with code in its arguments, used to run
in mcpgym. Each test makes such calls as a policy would (in process through `rollouts.rollout`,
the env's episode and its verifier; end to end through `python -m train.eval --bench bfcl`
with a scripted policy served over real HTTP), or hands the checker call text directly (the
second wall: even text that got past the first check runs nothing), and asserts that nothing
happened (no file, no change to a module) and that the call is the model's error, never an
infrastructure failure.
"""

from __future__ import annotations

import builtins
import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

pytest.importorskip("bfcl_eval")

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import envs
from contracts import PolicyTurn, Task, ToolCall
from envs.bfcl_mt import LEADERBOARD_MAX_TURNS, data
from envs.bfcl_mt.calls import call_text, scenario_functions, to_tool_call
from envs.bfcl_mt.executor import ApiInstances, instance_name
from envs.bfcl_mt.scoring import check
from envs.mcp_env import MCPEnv
from rollouts.jsonl import read_jsonl
from rollouts.rollout import rollout
from tests.fixtures.common import ThreadedServer, free_port

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "multi_turn_base_0"  # GorillaFileSystem and TwitterAPI: no TicketAPI
MARKER = "mcpgym_pwned"  # a payload sets builtins.<MARKER>; it must never exist


def code(canary: Path) -> list[str]:
    """Python that leaves a trace if it runs: a file, a new attribute of the builtins module."""
    return [
        f"__import__('pathlib').Path({str(canary)!r}).write_text('pwned')",
        f"__import__('builtins').__dict__.__setitem__({MARKER!r}, 1)",
    ]


class Attack(NamedTuple):
    name: str
    arguments: dict[str, Any]
    problem: str | None  # what the verdict's reason names (None: a call of literals, executed harmlessly)


def attack(kind: str, canary: Path) -> Attack:
    payload = code(canary)[0]
    return {
        # The two reproduced on the old code: each created the file.
        "wheel_executor": Attack(
            "execute_multi_turn_func_call",
            {
                "func_call_list": code(canary),
                "initial_config": {},
                "involved_classes": [],
                "model_name": "x",
                "test_entry_id": "y",
            },
            "unknown tool 'execute_multi_turn_func_call'",
        ),
        "open": Attack("open", {"file": str(canary), "mode": "w"}, "unknown tool 'open'"),
        # Dunder names and builtins.
        "dunder_import": Attack("__import__", {"name": "pathlib"}, "unknown tool '__import__'"),
        "dunder_class": Attack("__class__", {}, "unknown tool '__class__'"),
        "eval": Attack("eval", {"source": payload}, "unknown tool 'eval'"),
        "exec": Attack("exec", {"source": payload}, "unknown tool 'exec'"),
        "getattr": Attack("getattr", {"o": "cd", "name": "__globals__"}, "unknown tool 'getattr'"),
        "compile": Attack("compile", {"source": payload, "filename": "x", "mode": "exec"}, "unknown tool 'compile'"),
        # Attribute chains as the name.
        "os_system": Attack("os.system", {"command": f"touch {canary}"}, "unknown tool 'os.system'"),
        "mro_chain": Attack("x.__class__.__mro__", {}, "unknown tool 'x.__class__.__mro__'"),
        "call_in_name": Attack(f"cd(folder='a') or {payload} or cd", {}, "unknown tool"),
        # A real function of an API this task does not involve.
        "other_api": Attack("get_ticket", {"ticket_id": 1}, "unknown tool 'get_ticket'"),
        # Keys that are not the function's parameters.
        "dunder_key": Attack("cd", {"folder": "document", "__class__": "x"}, "bad arguments for 'cd'"),
        "unknown_key": Attack("mkdir", {"dir_name": "temp", "mode": 511}, "bad arguments for 'mkdir'"),
        "code_key": Attack("cd", {f"folder={payload},x": 1}, "bad arguments for 'cd'"),
        # A value that is code: it stays a string (the folder is not found), nothing runs.
        "code_value": Attack("cd", {"folder": payload}, None),
        "nested_code_value": Attack("mkdir", {"dir_name": {"__class__": [payload]}}, None),
    }[kind]


ATTACKS = [
    "wheel_executor",
    "open",
    "dunder_import",
    "dunder_class",
    "eval",
    "exec",
    "getattr",
    "compile",
    "os_system",
    "mro_chain",
    "call_in_name",
    "other_api",
    "dunder_key",
    "unknown_key",
    "code_key",
]
# Code as a value: a JSON string stays a Python string literal (it was so before too), so these
# go with the others into the one-turn verifier test below rather than a test of their own.
CODE_VALUES = ["code_value", "nested_code_value"]


@pytest.fixture(autouse=True)
def _marker_cleared() -> Iterator[None]:
    """One payload that got through must not fail the attacks after it: each test starts clean."""
    yield
    if hasattr(builtins, MARKER):
        delattr(builtins, MARKER)


def assert_no_trace(canary: Path) -> None:
    assert not canary.exists(), "the payload ran: it wrote the file"
    assert not hasattr(builtins, MARKER), "the payload ran: it changed the builtins module"


# -- in process: a policy's calls through rollouts.rollout, the env's episode and its verifier ----


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[MCPEnv]:
    async with envs.load("bfcl-multi-turn", categories="multi_turn_base") as loaded:
        yield loaded


class AttackPolicy:
    """In the first user turn, the attack's call, then an answer; every later turn, an answer."""

    model = "attacker"

    def __init__(self, call: ToolCall) -> None:
        self.call = call

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        first_turn = sum(1 for m in messages if m["role"] == "user") == 1
        if not first_turn or any(m["role"] == "assistant" for m in messages[last_user:]):
            return PolicyTurn(message={"role": "assistant", "content": "Done."}, content="Done.")
        message = {"role": "assistant", "content": "", "tool_calls": [self.call.to_openai()]}
        return PolicyTurn(message=message, content="", tool_calls=[self.call])


def task(env: MCPEnv) -> Task:
    return next(t for t in env.tasks("all") if t.id == ENTRY)


@pytest.mark.parametrize("kind", ATTACKS)
async def test_a_policys_call_runs_no_code_and_is_the_models_error(env: MCPEnv, tmp_path: Path, kind: str) -> None:
    canary = tmp_path / "pwned"
    name, arguments, problem = attack(kind, canary)
    call = ToolCall(id="attack-0", name=name, arguments=json.dumps(arguments))
    traj = await rollout(env, AttackPolicy(call), task(env), max_turns=LEADERBOARD_MAX_TURNS)
    assert_no_trace(canary)
    assert traj.error is None or traj.error.kind == "model", traj.error
    assert traj.verdict is not None and not traj.verdict.success, traj.verdict  # verified, not masked as infra
    assert f"not executed: {problem}" in traj.verdict.reason
    (outcome,) = [o for o in traj.tool_outcomes if o.call_id == call.id]
    assert not outcome.ok and outcome.error in {"unknown_tool", "bad_arguments", "tool_error"}


async def test_every_attack_in_one_turn_through_the_verifier(env: MCPEnv, tmp_path: Path) -> None:
    """The verifier alone (as `rollouts.rollout` calls it): all the calls of one turn at once,
    beside the right ones, which still score (rejected calls change nothing, as an unknown
    function changes nothing in the leaderboard)."""
    canary = tmp_path / "pwned"
    entry = data.entry(ENTRY)
    right = [
        [to_tool_call(text, f"gt-{t}-{i}") for i, text in enumerate(turn)]
        for t, turn in enumerate(entry["ground_truth"])
    ]
    attacks = [attack(kind, canary) for kind in [*ATTACKS, *CODE_VALUES]]
    calls = [ToolCall(id=f"a{i}", name=a.name, arguments=json.dumps(a.arguments)) for i, a in enumerate(attacks)]
    turns = [[*calls, *right[0]], *right[1:]]
    verdict = env.verify(task(env), "", [c for turn in turns for c in turn], turns=turns)
    assert_no_trace(canary)
    assert verdict.success, verdict.reason
    assert "not executed: unknown tool 'execute_multi_turn_func_call', unknown tool 'open'" in verdict.reason
    code_value = calls[len(ATTACKS)]  # code as a value: a string literal, never code
    functions = scenario_functions(entry["involved_classes"])
    assert call_text(code_value, functions) == f"cd(folder={code(canary)[0]!r})"


# -- the second wall: call text that reaches the checker runs nothing ----------------------------


def hostile_texts(canary: Path) -> list[str]:
    payload, marker = code(canary)
    path = repr(str(canary))
    instance = instance_name("mcpgym_eval", ENTRY, "GorillaFileSystem")
    return [
        payload,
        marker,
        f"open({path}, 'w')",
        f"open(file={path}, mode='w')",
        f'exec("{payload}")',
        f'eval("{payload}")',
        f"execute_multi_turn_func_call([{payload!r}], {{}}, [], 'x', 'y')",
        f"execute_multi_turn_func_call(func_call_list=[{marker!r}], initial_config={{}}, involved_classes=[], "
        "model_name='x', test_entry_id='y')",
        f"compile({payload!r}, 'x', 'exec')",
        "getattr(cd, '__globals__')",
        "globals()",
        f"os.system('touch {canary}')",
        "x.__class__.__mro__",
        "ls.__globals__['__builtins__']",
        # Literal-looking calls whose values are expressions.
        f"cd(folder={payload})",
        f"cd(folder=[{payload}])",
        f"mkdir(dir_name={{'a': {marker}}})",
        f"cd(folder=open({path}, 'w'))",
        f"cd(folder=(lambda: {payload})())",
        "cd(folder=__class__)",
        f"cd(*[{payload}])",
        f"cd(**{{'folder': {payload}}})",
        # Not a call, or more than one expression.
        f"[{payload}]",
        f"cd(folder='document') or {payload}",
        f"cd(folder='document'); {payload}",
        f"(lambda: {payload})()",
        # The instances by the name the leaderboard gives them: only their public methods answer.
        f"{instance}.__class__.__init__.__globals__['__builtins__']['open']({path}, 'w')",
        f"{instance}.cd.__func__.__globals__['__builtins__']['open']({path}, 'w')",
        f"{instance}._load_scenario({{}})",
        f"{instance}.__init__()",
        "kill()",
    ]


def test_call_text_with_code_runs_nothing_in_the_checker(tmp_path: Path) -> None:
    """`scoring.check` (the verifier's checker) on hostile call text: no trace, a verdict."""
    canary = tmp_path / "pwned"
    entry = data.entry(ENTRY)
    model_turns = [[hostile_texts(canary)], *([["pwd()"]] for _ in entry["ground_truth"][1:])]
    result = check(entry, model_turns)
    assert_no_trace(canary)
    assert not result["valid"] and result["error_type"] == "multi_turn:instance_state_mismatch"


def test_the_executor_answers_hostile_text_with_errors_and_keeps_its_state(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    entry = data.entry(ENTRY)

    def fresh() -> ApiInstances:
        return ApiInstances(ENTRY, entry["initial_config"], entry["involved_classes"], long_context=False)

    attacked, untouched = fresh(), fresh()
    results = attacked.execute(hostile_texts(canary))
    untouched.execute([])
    assert_no_trace(canary)
    assert all(r.startswith("Error during execution: ") for r in results), results
    for class_name, instance in attacked.instances.items():
        assert _public(instance) == _public(untouched.instances[class_name]), class_name
    assert attacked.execute(["pwd()"]) == ['{"current_working_directory": "/workspace"}']


def _public(instance: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(instance).items() if not k.startswith("_")}


# -- end to end: python -m train.eval --bench bfcl, a scripted policy over real HTTP -------------


class AttackServer(ThreadedServer):
    """An OpenAI-compatible chat server whose first reply of the conversation is the attack's
    calls; every other reply an answer."""

    thread_name = "bfcl-attack"

    def __init__(self, calls: list[Attack]) -> None:
        self.calls = calls
        self.port = free_port()
        self._ids = itertools.count()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        messages = body["messages"]
        first = sum(1 for m in messages if m["role"] == "user") == 1 and messages[-1]["role"] == "user"
        message: dict[str, Any] = {"role": "assistant", "content": "Done."}
        if first:
            calls = [
                {
                    "id": f"attack-{i}",
                    "type": "function",
                    "function": {"name": a.name, "arguments": json.dumps(a.arguments)},
                }
                for i, a in enumerate(self.calls)
            ]
            message = {"role": "assistant", "content": "", "tool_calls": calls}
        completion = {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if first else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
        return JSONResponse(completion)


def test_train_eval_bench_bfcl_runs_no_code_from_a_policy(tmp_path: Path) -> None:
    opened, executed = tmp_path / "opened", tmp_path / "executed"
    calls = [
        attack("open", opened),
        attack("wheel_executor", executed),
        attack("other_api", tmp_path / "unused"),
        attack("dunder_key", tmp_path / "unused"),
    ]
    out = tmp_path / "bfcl.jsonl"
    with AttackServer(calls) as server:
        argv = ["--bench", "bfcl", "--categories", "multi_turn_base", "--limit", "1", "--base-url", server.base_url]
        argv += ["--model", "scripted", "--out", str(out), "--no-progress"]
        done = subprocess.run(
            [sys.executable, "-m", "train.eval", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not opened.exists() and not executed.exists(), "the policy's call ran code in mcpgym"
    (record,) = read_jsonl(out)
    assert record["id"] == ENTRY and record["error_type"] != "infra" and not record["valid"]
    (reason,) = record["error"]  # the model's error: the checker's verdict, with the calls not executed
    expected = "unknown tool 'open', unknown tool 'execute_multi_turn_func_call', unknown tool 'get_ticket'"
    assert f"not executed: {expected}, bad arguments for 'cd'" in reason
