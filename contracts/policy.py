"""What a rollout needs from a policy: one parsed reply per call (`rollouts.ChatPolicy` is the real one)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from .task import ToolCall


class TokenLogprobs(BaseModel):
    """The sampled tokens of one assistant turn, for RL."""

    token_ids: list[int | None]  # None where the server gave no id (no `return_tokens_as_token_ids`)
    logprobs: list[float]
    tokens: list[str]  # the token text (from `bytes` when given)


class PolicyTurn(BaseModel):
    """One reply of the policy, parsed."""

    message: dict[str, Any]  # the assistant message as stored (OpenAI dict)
    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    parse_errors: list[str] = Field(default_factory=list)
    text_tool_calls: bool = False
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    logprobs: TokenLogprobs | None = None


@runtime_checkable
class Policy(Protocol):
    """A model that answers a conversation, given the tools."""

    @property
    def model(self) -> str: ...

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn: ...
