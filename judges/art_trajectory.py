"""An mcpgym `Trajectory` as ART's `art.Trajectory`: what RULER judges and what GRPO trains on.

It lives in `judges`, the lowest layer that uses ART (RULER is ART's judge), because both RULER
(`judges.ruler`) and training need the very same conversion: RULER sends the conversation as ART
renders it (`art.Trajectory.messages()`), so a second, slightly different conversion would change
what the judge reads. Training code takes it from `train.art_adapter`, never from here directly.
ART is imported only when a trajectory is converted (openpipe-art 0.5.18).
"""

from __future__ import annotations

from typing import Any

from contracts import Trajectory, TurnLogprobs
from rollouts.parse import inline_think

# The finish reasons an OpenAI `Choice` accepts; anything else recorded becomes "stop".
_FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


def to_art_trajectory(traj: Trajectory) -> Any:
    """An `art.Trajectory`. Assistant turns with recorded token ids/logprobs become
    `Choice` objects whose logprob tokens are `token_id:N` (what ART's tokenizer
    reads back as ids); the others stay plain messages. Thinking goes inline,
    because the recorded tokens include it and ART renders the message content."""
    import art  # lazy: art pulls in heavy dependencies

    by_index = {entry.message_index: entry for entry in (traj.logprobs or []) if entry}
    finish = [turn.finish_reason for turn in traj.turns]
    items: list[Any] = []
    assistant_turn = 0
    for index, message in enumerate(traj.messages):
        if message.get("role") != "assistant":
            items.append(dict(message))
            continue
        content = inline_think(message)
        entry = by_index.get(index)
        if entry is None:
            items.append(
                {key: value for key, value in message.items() if key != "reasoning_content"} | {"content": content}
            )
        else:
            reason = finish[assistant_turn] if assistant_turn < len(finish) else None
            items.append(_choice(message, content, entry, reason))
        assistant_turn += 1
    metrics = {
        key: value
        for key, value in traj.metrics.items()
        if isinstance(value, int | float | bool) and not isinstance(value, str)
    }
    # ART logs a trajectory's metrics averaged over the step: the reward's parts among them.
    metrics |= {f"reward_parts/{name}": value for name, value in traj.reward_parts.items()}
    return art.Trajectory(
        messages_and_choices=items,
        tools=traj.tools or None,
        reward=traj.reward if traj.reward is not None else 0.0,
        metrics=metrics,
        metadata={
            "id": traj.id,
            "task_id": traj.task_id,
            "env": traj.env,
            "sample": traj.sample,
            "group": traj.group,
            "success": traj.success,
            "off_policy": traj.off_policy,
        },
    )


def _choice(message: dict[str, Any], content: str, entry: TurnLogprobs, reason: str | None) -> Any:
    """A sampled assistant turn as the OpenAI `Choice` ART trains on (tokens as `token_id:N`)."""
    from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
    from openai.types.chat.chat_completion_message import ChatCompletionMessage
    from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

    tokens = [
        ChatCompletionTokenLogprob(
            token=f"token_id:{token_id}" if token_id is not None else text,
            logprob=float("nan") if logprob is None else logprob,  # off-policy: not sampled
            bytes=list(text.encode()),
            top_logprobs=[],
        )
        for token_id, logprob, text in zip(entry.token_ids, entry.logprobs, entry.tokens, strict=True)
    ]
    return Choice(
        index=0,
        finish_reason=reason if reason in _FINISH_REASONS else "stop",  # type: ignore[arg-type]
        message=ChatCompletionMessage.model_validate(
            {"role": "assistant", "content": content, "tool_calls": message.get("tool_calls") or None}
        ),
        logprobs=ChoiceLogprobs(content=tokens),
    )
