"""The request mixes `serve.bench` sends: plain chat prompts, and realistic agent traffic.

Agent traffic is what a rollout or a deployed agent really sends: the env's system prompt and tool
schemas on every request, and conversations that grow with assistant tool calls and the tools'
real results. It is built by replaying each task's expected calls against the env itself (so tool
results are the env's own output, not made up), taking one request per turn: the opening question,
then the conversation after each step of calls.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel

from contracts import Environment, ToolCall

Workload = Literal["chat", "agent"]
WORKLOADS: tuple[Workload, ...] = ("chat", "agent")

CHAT_PROMPTS = (
    "Explain in two sentences what a heat pump does.",
    "Write a haiku about natural gas pipelines.",
    "What is the difference between a megawatt and a megawatt-hour?",
    "Give three tips for writing clear commit messages.",
    "Summarise the plot of Hamlet in one paragraph.",
    "List five prime numbers greater than 100.",
    "How does a transformer model process a sentence? Keep it short.",
    "Translate 'the meeting is postponed until Monday' into French and German.",
    "What are the main causes of inflation?",
    "Describe a good breakfast for a long hike.",
    "Why is the sky blue? Answer for a ten-year-old.",
    "Write a Python function that reverses a string.",
    "What is a LoRA adapter in machine learning?",
    "Name the planets of the solar system in order.",
    "Suggest a name for a coffee shop next to a train station.",
    "What does an electricity grid operator do during a heat wave?",
)


class BenchRequest(BaseModel):
    """One chat-completions body to send (model and sampling are added by the benchmark)."""

    kind: Workload
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None

    @property
    def tool_names(self) -> set[str]:
        return {tool["function"]["name"] for tool in self.tools or []}


def chat_requests() -> list[BenchRequest]:
    return [BenchRequest(kind="chat", messages=[{"role": "user", "content": text}]) for text in CHAT_PROMPTS]


async def agent_requests(env: Environment, *, split: str = "train", tasks: int = 24) -> list[BenchRequest]:
    """One request per turn of the first `tasks` tasks of `split`, with real tool results from `env`.

    `env` is any `contracts.Environment`, already started (the caller owns its lifetime:
    `serve.bench` loads the one the user names and enters it around this call)."""
    requests: list[BenchRequest] = []
    for task in env.tasks(split)[:tasks]:
        async with env.episode() as episode:
            observation = await episode.reset(task)
            messages = list(observation.messages)
            tools = list(observation.tools)
            requests.append(BenchRequest(kind="agent", messages=copy.deepcopy(messages), tools=tools))
            for step in sorted({call.step for call in task.expected_calls}):
                calls = [
                    ToolCall(id=f"call_{step}_{i}", name=call.name, arguments=call.arguments)
                    for i, call in enumerate(c for c in task.expected_calls if c.step == step)
                ]
                result = await episode.step(calls)
                messages.append({"role": "assistant", "content": None, "tool_calls": [c.to_openai() for c in calls]})
                messages.extend(result.messages)
                requests.append(BenchRequest(kind="agent", messages=copy.deepcopy(messages), tools=tools))
    if not requests:
        raise ValueError(f"env {env.name!r} has no tasks in split {split!r}")
    return requests
