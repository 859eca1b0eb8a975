"""Fixes for openpipe-art 0.5.18 next to the transformers 5 / openai 3 this project installs.

Every patch of ART's behaviour lives here, each written against openpipe-art 0.5.18 (the version
pyproject pins) and checked by tests/test_train_backend.py and tests/test_train_guidance.py; on an
ART upgrade, re-read the ART code each one names and drop the patches it no longer needs. They are
applied by the torch backend (`torch_backend.py`: the mask fix at import, the others per model or
per training call) and, for the mask fix, by the scripts that run a forward pass next to `art`.

- `import art` (`art.transformers.patches`) replaces `transformers.masking_utils.
  _preprocess_mask_arguments` with a wrapper written for transformers 4 (it passes
  `cache_position`, which transformers 5 dropped), so every forward pass in a process that
  imported art fails with a TypeError. `fix_transformers_mask_patch` puts back a wrapper with the
  installed signature that keeps what ART's patch is for (3-D position ids of multimodal models
  reduced to their first plane).
- `model.openai_client()` builds its client with an `httpx.Timeout`, which openai 3 (on httpx2)
  rejects at the first request; `install_openai_client` gives the model the same ART proxy around
  a client built the openai-3 way.

- `LocalBackend.train` calls `model._get_wandb_run()`, which imports wandb before checking
  `WANDB_API_KEY`; wandb is not one of art's dependencies. `wandb_optional(model)` makes that call
  answer None (no run) while wandb is not installed.

- ART's `tokenize_trajectory` renders a sampled `Choice` as a sentinel content *plus* its parsed
  `tool_calls`, then swaps the sentinel for the sampled tokens. The sampled tokens already hold the
  `<tool_call>` text, so with a template that renders tool calls after the content (mcpgym's,
  Qwen's) every call appears twice in the context of the following turns (only ART's last choice
  is spared). `choices_as_sampled(groups)` drops the parsed calls from trainable choices, so the
  sequence is exactly what the policy generated and saw.

All are idempotent and no-ops where the installed versions need no fix.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from art.model import Model
    from art.trajectories import TrajectoryGroup


def fix_transformers_mask_patch() -> bool:
    """Undo ART's transformers-4 mask patch when transformers 5 is installed; True if it fixed it."""
    import art  # noqa: F401  (the patch is applied at import; import first so the fix sticks)
    from art.transformers import patches
    from transformers import masking_utils

    original = patches._preprocess_mask_arguments
    if masking_utils._preprocess_mask_arguments is not patches._patched_preprocess_mask_arguments:
        return False  # not patched (or already fixed)
    if "cache_position" in inspect.signature(original).parameters:
        return False  # transformers 4: ART's patch matches it

    @functools.wraps(original)
    def preprocess_mask_arguments(config: Any, inputs_embeds: Any, attention_mask: Any, *args: Any, **kwargs: Any):
        position_ids = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        if position_ids is not None and len(position_ids.shape) == 3:
            if "position_ids" in kwargs:
                kwargs["position_ids"] = position_ids[0]
            else:
                args = (args[0], position_ids[0], *args[2:])
        return original(config, inputs_embeds, attention_mask, *args, **kwargs)

    masking_utils._preprocess_mask_arguments = preprocess_mask_arguments
    return True


def install_openai_client(model: Model, base_url: str, api_key: str) -> None:
    """Give `model.openai_client()` a client that works with the installed openai (see above)."""
    from art.model import _OpenAIClientProxy
    from openai import AsyncOpenAI, DefaultAsyncHttpxClient, Timeout

    raw = AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        http_client=DefaultAsyncHttpxClient(timeout=Timeout(1200.0, connect=5.0)),
    )
    proxy = _OpenAIClientProxy(raw, model._record_openai_completion_costs, model._default_chat_completion_extra_body())
    object.__setattr__(model, "_openai_client", proxy)


@contextlib.contextmanager
def wandb_optional(model: Model) -> Iterator[None]:
    """Within the block, `model._get_wandb_run()` is None when wandb is not installed (see above)."""
    if importlib.util.find_spec("wandb") is not None or "_get_wandb_run" in vars(model):
        yield  # installed, or already answered for this model (make_model without wandb)
        return
    object.__setattr__(model, "_get_wandb_run", lambda: None)  # an instance attribute shadows the method
    try:
        yield
    finally:
        model.__dict__.pop("_get_wandb_run", None)


def choices_as_sampled(groups: Iterable[TrajectoryGroup]) -> list[TrajectoryGroup]:
    """Copies of `groups` whose sampled choices (those with logprobs) carry no parsed tool calls (see above)."""
    from art.trajectories import TrajectoryGroup
    from openai.types.chat.chat_completion import Choice

    def fix(item: Any) -> Any:
        if isinstance(item, Choice) and item.logprobs is not None and item.message.tool_calls:
            return item.model_copy(
                update={
                    "message": item.message.model_copy(
                        update={"tool_calls": None, "content": item.message.content or ""}
                    )
                }
            )
        return item

    fixed: list[TrajectoryGroup] = []
    for group in groups:
        trajectories = [
            traj.model_copy(
                update={
                    "messages_and_choices": [fix(item) for item in traj.messages_and_choices],
                    "additional_histories": [
                        history.model_copy(
                            update={"messages_and_choices": [fix(i) for i in history.messages_and_choices]}
                        )
                        for history in traj.additional_histories
                    ],
                }
            )
            for traj in group.trajectories
        ]
        copy = TrajectoryGroup(trajectories, metadata=group.metadata, metrics=group.metrics, logs=group.logs)
        copy.exceptions = group.exceptions[:]  # already PydanticExceptions: the constructor would wrap them again
        fixed.append(copy)
    return fixed
