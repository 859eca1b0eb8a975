"""Warm start for GRPO: when the base model cannot do the task at all, SFT it first.

GRPO learns only from groups whose rollouts differ in reward; a model that never calls a tool
right gives groups of zeros and nothing to learn. So `--warm-start auto` first probes the base
model's success on a few training tasks; below the threshold it builds SFT data, trains it
(`train.sft.run_sft`) and GRPO starts from that adapter.

SFT data, by `--teacher`:
- `model`: rollouts of a teacher (`--teacher-base-url/--teacher-model`, any OpenAI-compatible
  model; by default the base model itself) whose PROMPT carries a few solved examples of the same
  task kind (`FewShotPolicy`). The stored trajectory is the plain prompt plus the teacher's turns,
  so the student learns to call tools zero-shot. Kept only when the judge scores them high and the
  env verifies them.
- `oracle`: demonstrations from each task's expected calls (`OraclePolicy`), executed for real
  against the env, so the tool outputs are real; the final answer states the task's answer.
- `model+oracle` (what `auto` means): the teacher first, oracle demonstrations for the tasks the
  teacher did not solve.

All of it is the rollouts' own trajectory JSONL (`teacher.jsonl`, `oracle.jsonl`, `sft.jsonl`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from contracts import Task, ToolCall, Trajectory
from rollouts.policy import PolicyTurn

Teacher = Literal["auto", "model", "oracle", "model+oracle"]
TEACHERS: tuple[Teacher, ...] = ("auto", "model", "oracle", "model+oracle")


def task_signature(task: Task) -> tuple[str, ...]:
    """What a task asks the model to do: its kind and the tools of its expected calls, in order."""
    return (task.kind, *dict.fromkeys(call.name for call in task.expected_calls))


def stratified_tasks(tasks: Sequence[Task], limit: int, *, seed: int = 0, shuffled: bool = True) -> list[Task]:
    """`limit` tasks taken round-robin over task signatures (seeded shuffle within each); in
    round-robin order when not `shuffled`, so that any slice of it mixes signatures.

    A small model learns a tool's argument names only from demonstrations that call it; a plain
    random sample of 64 energy tasks held one `get_consumption` call and no parallel storage
    lookup, and those were the templates the warm-started model got wrong."""
    rng = random.Random(seed)
    by_signature: dict[tuple[str, ...], list[Task]] = {}
    for task in tasks:
        by_signature.setdefault(task_signature(task), []).append(task)
    queues = [by_signature[key] for key in sorted(by_signature)]
    for queue in queues:
        rng.shuffle(queue)
    rng.shuffle(queues)  # a last, partial round takes random signatures, not the first in sort order
    target = min(limit, len(tasks))
    chosen: list[Task] = []
    while len(chosen) < target:
        for queue in queues:
            if queue and len(chosen) < target:
                chosen.append(queue.pop())
    if shuffled:
        rng.shuffle(chosen)
    return chosen


def should_warm_start(success_rate: float, threshold: float) -> bool:
    """Warm start when the base model's probe success is below the threshold."""
    return success_rate < threshold


def _user_question(messages: Sequence[dict[str, Any]]) -> str:
    for message in messages:
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def format_answer(answer: Any) -> str:
    """A final answer sentence that the env's verifier accepts for `answer`."""
    if isinstance(answer, bool):
        return "Yes." if answer else "No."
    if isinstance(answer, int | float):
        return f"The answer is {answer:g}." if isinstance(answer, float) else f"The answer is {answer}."
    if isinstance(answer, dict):
        parts = [
            f"{key}: {format_answer(value).removeprefix('The answer is ').rstrip('.')}" for key, value in answer.items()
        ]
        return "; ".join(parts) + "."
    if isinstance(answer, list | tuple):
        return ", ".join(format_answer(value).removeprefix("The answer is ").rstrip(".") for value in answer) + "."
    return f"{answer}" if answer is not None else "I cannot tell."


class OraclePolicy:
    """A scripted policy that makes a task's expected calls, step by step, then states its answer.

    Run through `rollouts.run_rollouts` against the real env, it yields demonstrations whose tool
    outputs are real. It finds the task by the user question of the conversation."""

    def __init__(self, tasks: Sequence[Task], *, name: str = "oracle") -> None:
        self.by_question = {task.question: task for task in tasks}
        self._name = name

    @property
    def model(self) -> str:
        return self._name

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        task = self.by_question.get(_user_question(messages))
        if task is None:
            raise LookupError("oracle: the conversation's question is not one of its tasks")
        steps = sorted({call.step for call in task.expected_calls})
        done = sum(1 for message in messages if message.get("role") == "assistant" and message.get("tool_calls"))
        if done < len(steps):
            calls = [
                ToolCall(id=f"call_{done}_{index}", name=call.name, arguments=json.dumps(call.arguments))
                for index, call in enumerate(call for call in task.expected_calls if call.step == steps[done])
            ]
            message = {"role": "assistant", "content": "", "tool_calls": [call.to_openai() for call in calls]}
            return PolicyTurn(message=message, content="", tool_calls=calls, finish_reason="tool_calls")
        text = format_answer(task.answer)
        return PolicyTurn(message={"role": "assistant", "content": text}, content=text, finish_reason="stop")


class FewShotPolicy:
    """A policy whose request carries solved examples of the task's kind before the question.

    Only the request changes: the rollout stores the plain conversation, so trajectories made with
    it teach zero-shot tool use. `examples` maps a task kind to example messages (user, assistant
    tool calls, tool results, final answer); `kind_of` maps a question to its kind."""

    def __init__(
        self,
        inner: Any,
        examples: dict[str, list[list[dict[str, Any]]]],
        kind_of: dict[str, str],
        *,
        per_prompt: int = 2,
    ) -> None:
        self.inner = inner
        self.examples = examples
        self.kind_of = kind_of
        self.per_prompt = per_prompt

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def config(self) -> Any:
        return getattr(self.inner, "config", None)

    def shots(self, question: str) -> list[dict[str, Any]]:
        kind = self.kind_of.get(question, "single")
        pool = [ex for ex in self.examples.get(kind, []) if _user_question(ex) != question]
        if len(pool) < self.per_prompt:  # top up with other kinds, so every prompt gets examples
            pool += [
                ex
                for k, items in sorted(self.examples.items())
                if k != kind
                for ex in items
                if _user_question(ex) != question
            ]
        return [message for example in pool[: self.per_prompt] for message in example]

    def with_shots(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shots = self.shots(_user_question(messages))
        head = 1 if messages and messages[0].get("role") == "system" else 0
        return [*messages[:head], *shots, *messages[head:]]

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        return await self.inner.act(self.with_shots(messages), tools)


def example_messages(traj: Trajectory) -> list[dict[str, Any]]:
    """A solved trajectory as few-shot messages: everything after the system prompt."""
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    return [
        {key: value for key, value in message.items() if key in keep}
        for message in traj.messages
        if message.get("role") != "system"
    ]


def examples_by_kind(trajs: Sequence[Trajectory], *, per_kind: int = 2) -> dict[str, list[list[dict[str, Any]]]]:
    """Up to `per_kind` solved examples of each task kind, shortest first (they cost context)."""
    out: dict[str, list[list[dict[str, Any]]]] = {}
    for traj in sorted(trajs, key=lambda t: len(json.dumps(t.messages))):
        if not traj.success or traj.is_infra_failure:
            continue
        kind = traj.task.kind
        if len(out.setdefault(kind, [])) < per_kind:
            out[kind].append(example_messages(traj))
    return out


class WarmStartData(BaseModel):
    """What the SFT data was built from."""

    teacher: str
    sft_path: Path
    n_tasks: int
    n_teacher: int = 0  # teacher trajectories kept
    n_teacher_tried: int = 0
    n_oracle: int = 0
    n_examples: int = 0


async def oracle_rollouts(env: Any, tasks: Sequence[Task], *, out: Path, max_turns: int) -> list[Trajectory]:
    """Demonstrations from the expected calls, run for real against the env (verified by it)."""
    from rollouts import run_rollouts

    result = await run_rollouts(
        env, OraclePolicy(tasks), list(tasks), samples=1, concurrency=4, out=out, max_turns=max_turns, progress=False
    )
    return result.all


async def build_sft_data(
    env: Any,
    tasks: Sequence[Task],
    *,
    teacher: Teacher,
    teacher_policy: Any,
    example_tasks: Sequence[Task],
    judge: Any,
    out_dir: Path,
    min_reward: float = 0.8,
    max_turns: int = 4,
    concurrency: int = 8,
    teacher_tasks: int | None = None,
) -> WarmStartData:
    """Build `out_dir/sft.jsonl` for `tasks` (see the module docstring for the teachers).

    The teacher tries the first `teacher_tasks` of them (None: all); oracle demonstrations, in
    `model+oracle`, cover every task it did not solve."""
    out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240  (once, before any rollout)
    mode = "model+oracle" if teacher == "auto" else teacher
    kept: list[Trajectory] = []
    tried = 0
    if mode in ("model", "model+oracle"):
        examples = await oracle_rollouts(env, example_tasks, out=out_dir / "examples.jsonl", max_turns=max_turns)
        policy = FewShotPolicy(teacher_policy, examples_by_kind(examples), {task.question: task.kind for task in tasks})
        kept, tried = await _teacher_rollouts(
            env,
            policy,
            list(tasks)[:teacher_tasks],  # [:None] is all of them
            judge=judge,
            out=out_dir / "teacher.jsonl",
            min_reward=min_reward,
            max_turns=max_turns,
            concurrency=concurrency,
        )
    oracle: list[Trajectory] = []
    if mode in ("oracle", "model+oracle"):
        solved = {traj.task_id for traj in kept}
        missing = [task for task in tasks if task.id not in solved]
        if missing:
            oracle = await _oracle_demonstrations(
                env, missing, judge=judge, out=out_dir / "oracle.jsonl", max_turns=max_turns
            )
    sft_path = write_sft_data(out_dir / "sft.jsonl", [*kept, *oracle])
    print(
        f"warm start: {len(kept)}/{tried} teacher trajectories kept, {len(oracle)} oracle demonstrations",
        flush=True,
    )
    return WarmStartData(
        teacher=mode,
        sft_path=sft_path,
        n_tasks=len(tasks),
        n_teacher=len(kept),
        n_teacher_tried=tried,
        n_oracle=len(oracle),
        n_examples=len(kept) + len(oracle),
    )


async def _teacher_rollouts(
    env: Any,
    policy: FewShotPolicy,
    tasks: list[Task],
    *,
    judge: Any,
    out: Path,
    min_reward: float,
    max_turns: int,
    concurrency: int,
) -> tuple[list[Trajectory], int]:
    """The few-shot teacher on `tasks` (resuming from `out`), scored; (the solved ones, how many tried)."""
    from rollouts import run_rollouts

    print(f"warm start: teacher {policy.model} on {len(tasks)} train tasks (few-shot)", flush=True)
    result = await run_rollouts(env, policy, tasks, samples=1, concurrency=concurrency, out=out, max_turns=max_turns)
    rollouts = result.all
    scored = await judge.score(rollouts) if judge is not None else rollouts
    kept = [t for t in scored if t.success and t.reward is not None and t.reward >= min_reward]
    return kept, len(rollouts)


async def _oracle_demonstrations(
    env: Any, tasks: list[Task], *, judge: Any, out: Path, max_turns: int
) -> list[Trajectory]:
    """Oracle rollouts of `tasks` that the env (and the judge, if any) count as solved, at full reward."""
    demos = await oracle_rollouts(env, tasks, out=out, max_turns=max_turns)
    demos = await judge.score(demos) if judge is not None else demos
    oracle = [traj for traj in demos if traj.success]
    for traj in oracle:  # the demonstration is right by construction; the verifier agreed
        traj.reward = max(traj.reward or 0.0, 1.0)
    return oracle


def write_sft_data(path: Path, trajs: list[Trajectory]) -> Path:
    """`path` rewritten from `trajs` (it is rebuilt from teacher.jsonl / oracle.jsonl, which resume)."""
    from rollouts.jsonl import JsonlAppender

    path.unlink(missing_ok=True)
    with JsonlAppender(path) as appender:
        # In task order, not the order rollouts finished in: SFT shuffles with its seed, and the
        # same seed must give the same batches (two otherwise equal runs gave 35% and 52.5%).
        for traj in sorted(trajs, key=lambda traj: traj.task_id):
            appender.write(traj)
    return path
