"""The env contract pieces multi-turn needs, on a tiny server of its own (not BFCL): `Task.setup`
on a hidden tool, per-task tools, follow-up user turns (adding tools), sequential calls, the
per-user-turn step limit, `verify(..., turns=)`, and a several-turn rollout through `rollouts.rollout`."""

from __future__ import annotations

import json
from typing import Any

from fastmcp import Context, FastMCP

from contracts import FollowUp, PolicyTurn, SetupCall, Task, ToolCall, Verdict
from envs.mcp_env import HIDDEN_META, MCPEnv
from rollouts.rollout import rollout


def build_counter() -> FastMCP:
    mcp = FastMCP("counter")

    @mcp.tool(meta={HIDDEN_META: True})
    async def seed(start: int, ctx: Context) -> str:
        """Hidden: the session's counter starts here."""
        await ctx.set_state("n", start)
        return "ok"

    @mcp.tool
    async def bump(ctx: Context) -> int:
        """Add one."""
        n = (await ctx.get_state("n") or 0) + 1
        await ctx.set_state("n", n)
        return n

    @mcp.tool
    async def double(ctx: Context) -> int:
        """Times two."""
        n = (await ctx.get_state("n") or 0) * 2
        await ctx.set_state("n", n)
        return n

    @mcp.tool
    def secret() -> str:
        """Hidden by the env's option."""
        return "s"

    return mcp


def call(name: str, i: int = 0) -> ToolCall:
    return ToolCall(id=f"c{i}", name=name, arguments="{}")


TASK = Task(
    id="t",
    question="bump",
    kind="multi_turn",
    setup=[SetupCall(tool="seed", arguments={"start": 10})],
    tools=["bump"],
    follow_ups=[
        FollowUp(messages=[{"role": "user", "content": "again"}]),
        FollowUp(messages=[{"role": "user", "content": "now double"}], add_tools=["double"]),
    ],
)


def names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


async def test_setup_hidden_tools_and_follow_ups() -> None:
    async with MCPEnv(build_counter, hidden_tools=["secret"], parallel_calls=False) as env:
        assert names(await env.tools()) == ["bump", "double"]  # seed (meta) and secret (option) hidden
        async with env.episode() as ep:
            obs = await ep.reset(TASK)
            assert names(obs.tools) == ["bump"]
            assert (await ep.step([call("bump")])).messages[0]["content"] == "11"  # seeded at 10
            hidden = await ep.step([call("seed")])
            assert hidden.outcomes[0].error == "unknown_tool"  # the model cannot call a hidden tool
            turn = await ep.next_user("done")
            assert turn is not None and turn.tools is None and turn.messages[0]["content"] == "again"
            turn = await ep.next_user("done")
            assert turn is not None and names(turn.tools or []) == ["bump", "double"]
            # Sequential calls: in call order on one session.
            step = await ep.step([call("bump", 1), call("double", 2), call("bump", 3)])
            assert [m["content"] for m in step.messages] == ["12", "24", "25"]
            assert await ep.next_user("done") is None
        async with env.episode() as ep:  # another episode is seeded afresh
            await ep.reset(TASK)
            assert (await ep.step([call("bump")])).messages[0]["content"] == "11"


async def test_user_turn_step_limit_ends_the_conversation() -> None:
    async with MCPEnv(build_counter, user_turn_step_limit=2) as env:
        async with env.episode() as ep:
            await ep.reset(TASK)
            for i in range(3):
                await ep.step([call("bump", i)])
            assert await ep.next_user("") is None  # 3 steps > 2: the user gives up


class TurnPolicy:
    """Scripted: in each user turn, one step of calls, then an answer."""

    model = "scripted"

    def __init__(self, calls_per_turn: list[list[str]]) -> None:
        self.calls_per_turn = calls_per_turn

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        user_turn = sum(1 for m in messages if m["role"] == "user") - 1
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        answered = any(m["role"] == "assistant" for m in messages[last_user:])
        if answered or user_turn >= len(self.calls_per_turn):
            return PolicyTurn(message={"role": "assistant", "content": "done"}, content="done")
        calls = [
            ToolCall(id=f"u{user_turn}-{i}", name=n, arguments="{}")
            for i, n in enumerate(self.calls_per_turn[user_turn])
        ]
        message = {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls]}
        return PolicyTurn(message=message, content="", tool_calls=calls)


async def test_rollout_of_several_user_turns_gives_the_verifier_each_turn() -> None:
    seen: dict[str, Any] = {}

    def verifier(task: Task, answer: str, calls: list[ToolCall], turns: list[list[ToolCall]]) -> Verdict:
        seen["turns"] = [[c.name for c in turn] for turn in turns]
        return Verdict(success=True, score=1.0)

    async with MCPEnv(build_counter, verifier=verifier) as env:
        traj = await rollout(env, TurnPolicy([["bump"], ["bump"], ["double"]]), TASK)
    assert traj.error is None, traj.error
    assert seen["turns"] == [["bump"], ["bump"], ["double"]]
    assert traj.metrics["user_turns"] == 3
    assert [m["content"] for m in traj.messages if m["role"] == "user"] == ["bump", "again", "now double"]
    assert json.loads(traj.messages[-2]["content"]) == 24  # (10+1+1)*2
    assert names(traj.tools) == ["bump", "double"]
