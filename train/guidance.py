"""Off-policy guidance for GRPO (mixed-policy GRPO, as in LUFFY): a group whose on-policy samples
hold no success gets one successful trajectory of the same task as an extra member.

GRPO learns only from differences within a group. Where the policy never solves a task, its
samples differ at most in process reward, and training on them teaches caution, not the task;
measured on the energy warm start, 8 samples at temperature 0.7 solve the four signatures behind
most test failures 0-2 times in 16. A demonstration in the group gives it a success to move
towards: with the group's rewards centred and scaled, the demonstration's advantage is positive and
the failed samples' negative, so one update raises the demonstration and lowers the failures.

The demonstration comes from the env's oracle (`OraclePolicy`: the task's expected calls run for
real, the same kind the warm start trains on) or from a teacher model. Its record says
`off_policy: true`; its assistant turns carry the token ids the policy's chat template gives them
and null logprobs, since nobody sampled them: the trainer scores those tokens itself, and the torch
backend weights them with LUFFY's policy shaping (`torch_service.off_policy_logprobs`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from contracts import Task, Trajectory, TurnLogprobs, trajectory_id

Guidance = Literal["none", "oracle", "teacher"]


def unsolved(scored: Sequence[Trajectory]) -> list[str]:
    """Task ids whose live (not infra-failed) on-policy members hold no success."""
    from judges import group_trajectories

    ids = []
    for group in group_trajectories(list(scored)):
        live = [traj for traj in group if not traj.is_infra_failure and not traj.off_policy]
        if live and not any(traj.success for traj in live):
            ids.append(live[0].task_id)
    return ids


def policy_tokenizer(model: Any) -> Any:
    """The tokenizer ART trains `model` with: its base model's, with the configured chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model.base_model)
    template = (getattr(model, "_internal_config", None) or {}).get("chat_template_path")
    if template:
        tokenizer.chat_template = Path(template).read_text()
    return tokenizer


def turn_tokens(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[TurnLogprobs]:
    """Per assistant message, the token ids the policy would have generated to produce it: the chat
    template's rendering of that turn after its generation prompt, up to and with the end-of-turn
    token (where generation stops), and a null logprob for each."""
    eos = tokenizer.eos_token or ""
    entries = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        render = functools.partial(tokenizer.apply_chat_template, tools=tools, tokenize=False)
        prompt, full = render(messages[:index], add_generation_prompt=True), render(messages[: index + 1])
        if not full.startswith(prompt):
            raise ValueError("the chat template does not render an assistant turn after its generation prompt")
        text = full[len(prompt) :]
        end = text.find(eos) if eos else -1
        text = text[: end + len(eos)] if end >= 0 else text
        ids = tokenizer.encode(text, add_special_tokens=False)
        entries.append(
            TurnLogprobs(
                message_index=index,
                token_ids=ids,
                logprobs=[None] * len(ids),
                tokens=[tokenizer.decode([token]) for token in ids],
            )
        )
    return entries


def as_group_member(demo: Trajectory, *, sample: int, tokenizer: Any) -> Trajectory:
    """`demo` as an off-policy member of its task's group: sample index `sample` (after the
    on-policy ones), `off_policy`, and trainable token ids without sampled logprobs."""
    return demo.model_copy(
        update={
            "id": trajectory_id(demo.env, demo.task_id, sample),
            "sample": sample,
            "off_policy": True,
            "logprobs": turn_tokens(tokenizer, demo.messages, demo.tools or None),
        }
    )


async def demonstrations(
    env: Any,
    tasks: Sequence[Task],
    *,
    source: Guidance,
    teacher: Any = None,
    out: Path,
    max_turns: int,
    concurrency: int,
) -> list[Trajectory]:
    """One successful trajectory per task where one could be had: the oracle's (right by
    construction, checked by the env's verifier) or the teacher's (kept only when verified).
    Unscored: the judge scores them with their groups (a relative judge such as RULER needs those)."""
    from rollouts import run_rollouts
    from train.warmstart import OraclePolicy

    if source == "none" or not tasks:
        return []
    policy = OraclePolicy(tasks) if source == "oracle" else teacher
    result = await run_rollouts(
        env, policy, list(tasks), concurrency=concurrency, out=out, max_turns=max_turns, progress=False
    )
    return [traj for traj in result.all if traj.success and not traj.is_infra_failure]
