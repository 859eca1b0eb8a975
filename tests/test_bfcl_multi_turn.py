"""The BFCL multi-turn env: the server's tools are the leaderboard's function docs, sessions keep
their own state, the ground truth replayed through the env passes the leaderboard's checker with
the leaderboard's own execution results, wrong calls fail it, and episodes of several user turns
run end to end through `rollouts.rollout`. Needs the bfcl-eval wheel (data and APIs)."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

pytest.importorskip("bfcl_eval")

import envs
from contracts import EnvConfigError, PolicyTurn, Task, ToolCall
from envs.bfcl_mt import LEADERBOARD_MAX_TURNS, data
from envs.bfcl_mt.calls import UNSAFE_CALL, call_text, parse_call, scenario_functions, to_tool_call
from envs.bfcl_mt.checker import multi_turn_checker
from envs.bfcl_mt.executor import ApiInstances
from envs.bfcl_mt.processes import http_server
from envs.bfcl_mt.replay import replay_task
from envs.bfcl_mt.schemas import tool_schema
from envs.bfcl_mt.scoring import verify_turns
from envs.bfcl_mt.server import SETUP_TOOL, build_server
from envs.mcp_env import HIDDEN_META, MCPEnv
from rollouts.rollout import rollout


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[MCPEnv]:
    async with envs.load("bfcl-multi-turn") as loaded:
        yield loaded


def task(env: MCPEnv, entry_id: str) -> Task:
    return next(t for t in env.tasks("all") if t.id == entry_id)


def names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


# -- the server and its tools ------------------------------------------------------------------


async def test_tools_match_the_function_docs() -> None:
    from judges.bfcl.tools import to_openai_tools  # the single-turn path's conversion of the same docs

    listed = {tool.name: tool for tool in await build_server().list_tools()}
    docs = [doc for name in data.API_CLASSES for doc in data.func_docs(name)]
    assert set(listed) == {doc["name"] for doc in docs} | {SETUP_TOOL}
    assert len(docs) == 128
    for doc in docs:
        tool = listed[doc["name"]]
        description, parameters = tool_schema(doc)
        assert (tool.description, tool.parameters) == (description, parameters)
        expected = to_openai_tools([doc], "multi_turn_base")[0]["function"]
        assert (description, parameters) == (expected["description"], expected["parameters"])
    assert listed[SETUP_TOOL].meta and listed[SETUP_TOOL].meta.get(HIDDEN_META) is True


async def test_a_task_offers_its_apis_and_miss_func_adds_the_held_out_ones(env: MCPEnv) -> None:
    assert SETUP_TOOL not in names(await env.tools())
    entry = data.entry("multi_turn_miss_func_0")
    (turn, missed), *_ = entry["missed_function"].items()
    every = [doc["name"] for cls in entry["involved_classes"] for doc in data.func_docs(cls)]
    async with env.episode() as ep:
        obs = await ep.reset(task(env, entry["id"]))
        assert set(names(obs.tools)) == set(every) - set(missed)
        for _ in range(1, int(turn) + 1):
            following = await ep.next_user("")
            assert following is not None
        assert following.messages == [{"role": "user", "content": data.ADDED_FUNCTIONS_PROMPT}]
        assert set(names(following.tools or [])) == set(every)


async def test_two_sessions_of_one_server_do_not_share_state(env: MCPEnv) -> None:
    base = task(env, "multi_turn_base_0")
    async with env.episode() as first, env.episode() as second:
        await first.reset(base)
        await second.reset(base)
        made = await first.step([to_tool_call("mkdir(dir_name='only_in_first')", "a")])
        assert made.outcomes[0].ok
        seen_first = (await first.step([to_tool_call("ls()", "b")])).messages[0]["content"]
        seen_second = (await second.step([to_tool_call("ls()", "c")])).messages[0]["content"]
    assert "only_in_first" in seen_first and "only_in_first" not in seen_second


async def test_errors_come_back_as_the_leaderboard_executes_them(env: MCPEnv) -> None:
    async with env.episode() as ep:
        await ep.reset(task(env, "multi_turn_base_0"))  # GorillaFileSystem, TwitterAPI
        missing = await ep.step([ToolCall(id="a", name="cd", arguments="{}")])
        assert missing.messages[0]["content"].startswith("Error during execution: ")
        assert "missing 1 required positional argument: 'folder'" in missing.messages[0]["content"]
        absent = await ep.step([to_tool_call("get_ticket(ticket_id=1)", "b")])  # TicketAPI: not involved
        assert absent.messages[0]["content"] == "Error during execution: name 'get_ticket' is not defined"
        api_error = await ep.step([to_tool_call("cd(folder='nowhere')", "c")])  # the API's own error, a dict
        assert api_error.outcomes[0].ok and "error" in json.loads(api_error.messages[0]["content"])


# -- the ground truth, replayed --------------------------------------------------------------

SAMPLE = [f"{category}_{n}" for category in data.CATEGORIES for n in (0, 57, 133, 199)]


@pytest.mark.parametrize("entry_id", SAMPLE)
async def test_ground_truth_replay_passes_the_checker_with_the_leaderboards_results(env: MCPEnv, entry_id: str) -> None:
    replay = await replay_task(env, task(env, entry_id))
    assert replay.error is None, replay.error
    assert replay.passed, replay.reason
    assert replay.results_equal, replay.differences


async def test_ground_truth_replay_over_http() -> None:
    with http_server() as url:
        async with envs.load("bfcl-multi-turn", servers=url) as remote:
            assert SETUP_TOOL not in names(await remote.tools())  # hidden over HTTP too (the tool's _meta)
            for entry_id in ("multi_turn_base_1", "multi_turn_long_context_2"):
                replay = await replay_task(remote, task(remote, entry_id))
                assert replay.passed and replay.results_equal, replay


# -- the checker's executor and checker against the wheel's own (trusted text only: they eval it) --

_WHEEL = "bfcl_eval.eval_checker.multi_turn_eval"


def wheel_execute(entry: dict[str, Any], turns: list[list[str]], model_name: str) -> Iterator[tuple[list[str], Any]]:
    """The leaderboard's own results and instances, turn by turn (its globals cleaned up after)."""
    utils = importlib.import_module(f"{_WHEEL}.multi_turn_utils")
    scenario = entry["initial_config"], entry["involved_classes"]
    try:
        for calls in turns:
            yield utils.execute_multi_turn_func_call(
                calls,
                *scenario,
                model_name,
                entry["id"],
                long_context=data.is_long_context(entry["id"]),
                is_evaL_run=True,
            )
    finally:
        for key in [k for k in vars(utils) if k.startswith(model_name)]:
            del vars(utils)[key]


def public_state(instance: Any) -> dict[str, Any]:
    return {key: value for key, value in vars(instance).items() if not key.startswith("_")}


def test_the_executor_gives_the_leaderboards_results_and_states_on_the_whole_ground_truth() -> None:
    entries = [entry for category in data.CATEGORIES for entry in data.entries(category)]
    assert len(entries) == 800
    for entry in entries:
        ours = ApiInstances(
            entry["id"],
            entry["initial_config"],
            entry["involved_classes"],
            long_context=data.is_long_context(entry["id"]),
        )
        wheel = wheel_execute(entry, entry["ground_truth"], f"ref{uuid.uuid4().hex}")
        for turn, (want, instances) in zip(entry["ground_truth"], wheel, strict=True):
            assert ours.execute(turn) == want, (entry["id"], turn)
            assert {name: public_state(i) for name, i in ours.instances.items()} == {
                name: public_state(i) for name, i in instances.items()
            }, entry["id"]


def test_the_executor_answers_odd_text_as_the_leaderboard() -> None:
    """Benign text off the ground truth's path: errors, syntax errors, eval's blank stripping,
    positional arguments, and `function(` inside a string, which the leaderboard rewrites with
    the instance's name (the same name here: model "mcpgym", an eval run)."""
    entry = data.entry("multi_turn_base_0")  # GorillaFileSystem, TwitterAPI
    texts = [
        "touch(file_name='notes.txt')",
        "echo(content='then ls(-a) and cd (x)', file_name='notes.txt')",
        "cat(file_name='notes.txt')",
        "cd(folder='nowhere')",
        "cd(folder='x', nope=1)",
        "cd()",
        "invalid_function_call()",
        "cd(",
        "cd(folder='a', folder='b')",
        " \tpwd()",
        "touch('a.txt')",
        "ls(a=True)",
        "post_tweet(content='hi', tags=['#a'], mentions=[])",
        "kill()",
    ]
    ours = ApiInstances(entry["id"], entry["initial_config"], entry["involved_classes"], long_context=False)
    (want, instances), *_ = wheel_execute(entry, [texts], "mcpgym")
    assert ours.execute(texts) == want
    assert "mcpgym_eval_multi_turn_base_0_GorillaFileSystem_instance.ls(-a)" in want[2]
    assert {n: public_state(i) for n, i in ours.instances.items()} == {n: public_state(i) for n, i in instances.items()}


def checker_variants(ground_truth: list[list[str]]) -> Iterator[list[list[list[str]]]]:
    """Model turns made from the ground truth: right, and wrong in the ways models are."""
    first, rest = ground_truth[0], ground_truth[1:]

    def steps(turns: list[list[str]]) -> list[list[list[str]]]:
        return [[calls] if calls else [] for calls in turns]

    yield steps(ground_truth)
    yield [[[call] for call in calls] for calls in ground_truth]  # one call a step
    yield steps([list(reversed(calls)) for calls in ground_truth])
    yield steps([*ground_truth[:-1], []])
    yield steps([[], *ground_truth[:-1]])
    yield steps([first[1:], *rest])
    yield steps([[*first, *first[:1]], *rest])
    yield steps([[*first, "invalid_function_call()"], *rest])
    yield steps([[call.replace("'", "'x", 1) for call in first], *rest])


def test_the_checker_agrees_with_the_leaderboards_checker() -> None:
    wheel_checker = importlib.import_module(f"{_WHEEL}.multi_turn_checker").multi_turn_checker
    utils = importlib.import_module(f"{_WHEEL}.multi_turn_utils")
    seen: set[str] = set()
    for category in data.CATEGORIES:
        for entry in data.entries(category)[::10]:
            if not entry["ground_truth"][0]:
                continue
            scenario = {key: entry[key] for key in ("id", "initial_config", "involved_classes")}
            for model_turns in checker_variants(entry["ground_truth"]):
                name = f"agree{uuid.uuid4().hex}"
                try:
                    want = wheel_checker(model_turns, entry["ground_truth"], scenario, category, name)
                finally:
                    for key in [k for k in vars(utils) if k.startswith(name)]:
                        del vars(utils)[key]
                got = multi_turn_checker(model_turns, entry["ground_truth"], entry)
                assert (got["valid"], got.get("error_type"), got.get("error_message")) == (
                    want["valid"],
                    want.get("error_type"),
                    want.get("error_message"),
                ), (entry["id"], model_turns)
                seen.add(want.get("error_type", "valid"))
    kinds = {"multi_turn:empty_turn_model_response", "multi_turn:instance_state_mismatch"}
    assert seen >= {"valid", *kinds, "multi_turn:execution_response_mismatch"}


def gt_turns(entry_id: str) -> list[list[ToolCall]]:
    entry = data.entry(entry_id)
    return [
        [to_tool_call(text, f"{t}-{i}") for i, text in enumerate(turn)] for t, turn in enumerate(entry["ground_truth"])
    ]


def test_wrong_calls_fail_the_checker_and_partial_credit_counts_turns() -> None:
    entry = data.entry("multi_turn_base_0")
    turns = gt_turns(entry["id"])
    assert verify_turns(entry, turns).success
    total = len(turns)
    wrong_last = [*turns[:-1], []]  # nothing done in the last turn
    verdict = verify_turns(entry, wrong_last, partial=True)
    assert not verdict.success and verdict.score == pytest.approx((total - 1) / total)
    assert "empty_turn_model_response" in verdict.reason
    # A wrong argument in the first turn: the state differs, nothing passes.
    first = [to_tool_call(text.replace("'temp'", "'tmp'"), "x") for text in entry["ground_truth"][0]]
    assert first != turns[0]
    verdict = verify_turns(entry, [first, *turns[1:]], partial=True)
    assert not verdict.success and verdict.score == 0.0
    # Fewer turns than the ground truth: force-terminated, as the leaderboard's runner says.
    assert "force_terminated" in verify_turns(entry, turns[:-1]).reason
    # The same check twice gives the same verdict: no state leaks between checks.
    assert verify_turns(entry, turns).success


def test_call_text_is_safe_to_execute() -> None:
    functions = scenario_functions(["GorillaFileSystem", "TwitterAPI"])
    assert call_text(ToolCall(id="a", name="cd", arguments='{"folder": "x"}'), functions) == "cd(folder='x')"
    assert call_text(ToolCall(id="a", name="__import__", arguments="{}"), functions) == UNSAFE_CALL
    injected = json.dumps({"x=__import__('os').getcwd(),y": 1})
    assert call_text(ToolCall(id="a", name="cd", arguments=injected), functions) == UNSAFE_CALL
    assert call_text(ToolCall(id="a", name="cd", arguments="not json"), functions) is None
    assert parse_call("sort('final_report.pdf')") == ("sort", {"file_name": "final_report.pdf"})


# -- the env: split, options, rollouts -------------------------------------------------------


def test_registered_env_with_a_fixed_split(env: MCPEnv) -> None:
    train, test, every = env.tasks("train"), env.tasks("test"), env.tasks("all")
    assert (len(train), len(test), len(every)) == (600, 200, 800)
    assert all(int(t.id.rsplit("_", 1)[1]) % 4 == 0 for t in test)
    numbers = {t.id.rsplit("_", 1)[1] for t in train} & {t.id.rsplit("_", 1)[1] for t in test}
    assert not numbers  # a scenario (entry n of each category) is on one side only
    assert {t.metadata["category"] for t in test} == set(data.CATEGORIES)
    with pytest.raises(EnvConfigError, match="unknown BFCL multi-turn category"):
        envs.load("bfcl-multi-turn", categories="multi_turn_nope")
    assert len(envs.load("bfcl-multi-turn", categories="multi_turn_base").tasks("all")) == 200
    with pytest.raises(EnvConfigError, match="isolation"):
        envs.load("bfcl-multi-turn", isolation="shared")


class GroundTruthPolicy:
    """Scripted: each user turn, the ground truth's calls of that turn in one step, then an answer.
    `stall_turn`: keep calling `pwd` in that turn instead, never answering."""

    model = "scripted-bfcl"

    def __init__(self, entry_id: str, stall_turn: int | None = None) -> None:
        self.turns = data.entry(entry_id)["ground_truth"]
        self.stall_turn = stall_turn

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        user_turn = sum(1 for m in messages if m["role"] == "user") - 1
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        stepped = any(m["role"] == "assistant" for m in messages[last_user:])
        if user_turn == self.stall_turn:
            texts = ["pwd()"]
        elif stepped or not self.turns[user_turn]:
            return PolicyTurn(message={"role": "assistant", "content": "Done."}, content="Done.")
        else:
            texts = self.turns[user_turn]
        calls = [to_tool_call(text, f"call-{len(messages)}-{i}") for i, text in enumerate(texts)]
        message = {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]}
        return PolicyTurn(message=message, content="", tool_calls=calls)


@pytest.mark.parametrize("entry_id", ["multi_turn_base_3", "multi_turn_miss_func_5", "multi_turn_miss_param_7"])
async def test_several_user_turns_end_to_end_through_rollout(env: MCPEnv, entry_id: str) -> None:
    t = task(env, entry_id)
    traj = await rollout(env, GroundTruthPolicy(entry_id), t, max_turns=LEADERBOARD_MAX_TURNS)
    assert traj.error is None, traj.error
    assert traj.verdict is not None and traj.verdict.success, traj.verdict
    assert traj.reward == 1.0
    assert traj.metrics["user_turns"] == len(data.entry(entry_id)["question"])
    users = [m["content"] for m in traj.messages if m["role"] == "user"]
    assert users[0] == t.question and len(users) == 1 + len(t.follow_ups)


async def test_a_turn_past_the_step_limit_ends_the_conversation(env: MCPEnv) -> None:
    entry_id = "multi_turn_base_3"
    traj = await rollout(
        env, GroundTruthPolicy(entry_id, stall_turn=0), task(env, entry_id), max_turns=LEADERBOARD_MAX_TURNS
    )
    assert traj.metrics["user_turns"] == 1  # 21 steps in turn 0: the leaderboard's force quit
    assert traj.verdict is not None and not traj.verdict.success
    assert "force_terminated" in traj.verdict.reason


async def test_partial_credit_option_scores_turns_passed() -> None:
    async with envs.load("bfcl-multi-turn", categories="multi_turn_base", partial_credit=True) as partial:
        t = task(partial, "multi_turn_base_0")
        turns = gt_turns(t.id)
        verdict = partial.verify(t, "", [c for turn in turns for c in turn], turns=[*turns[:-1], []])
    assert not verdict.success and verdict.score == pytest.approx((len(turns) - 1) / len(turns))
