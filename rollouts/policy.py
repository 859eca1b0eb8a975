"""The policy: a chat model behind an OpenAI-compatible API (vLLM in production).

One `ChatPolicy` owns ONE `openai.AsyncOpenAI` client for its whole life, so
every turn of every concurrent rollout reuses the same connection pool. The
API key is read from the environment when the client is created (common.keys:
the named variable, a one-line warning when it would cross the network in
plain http) and lives only inside that client: `PolicyConfig` holds the *name*
of the variable, never the key, so dumping the config, a trajectory or a log
cannot leak it. A server mcpgym started itself hands its key to the
constructor (`api_key=`), which keeps it out of the config likewise.

With several replicas in `base_url` (comma-separated) there is one client per replica, and each
request goes to the least-loaded one, failing over to another when one is down
(rollouts.endpoints).

The client's own retries are off (`max_retries=0`): the rollout layer retries
transient failures itself with backoff and jitter, and counts them.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.keys import NO_KEY, key_for
from contracts import PolicyTurn, TokenLogprobs, valid_text

from .endpoints import EndpointPool, EndpointStats, parse_base_urls
from .parse import ThinkHistory, history_for_request, parse_reply


class PolicyConfig(BaseModel):
    """How to reach and sample the model. Safe to dump: it holds no secret."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = "http://localhost:8000/v1"  # or several replicas of one model, comma-separated
    model: str = "Qwen3-8B"
    api_key_env: str = "OPENAI_API_KEY"  # the variable's name; the key itself is never stored
    temperature: float | None = 0.7
    top_p: float | None = None
    max_tokens: int | None = 2048
    seed: int | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = "auto"
    parallel_tool_calls: bool | None = None
    logprobs: bool = False  # per-token logprobs for RL
    token_ids: bool = True  # with logprobs: ask vLLM for `token_id:N` tokens (`return_tokens_as_token_ids`)
    keep_think: bool = True  # keep `<think>` text in the stored trajectory (as `reasoning_content`)
    think_history: ThinkHistory = "qwen3"  # how earlier thinking is sent back (see parse.history_for_request)
    request_timeout_s: float = 120.0
    cooldown_s: float = 10.0  # a replica that failed is left out this long (rollouts.endpoints)
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return ",".join(parse_base_urls(value))

    @property
    def base_urls(self) -> list[str]:
        return self.base_url.split(",")


class PolicyError(RuntimeError):
    """The server answered with something that is not a usable completion."""


class ChatPolicy:
    """`await policy.act(messages, tools) -> PolicyTurn`, one shared client."""

    def __init__(
        self,
        config: PolicyConfig,
        *,
        client: openai.AsyncOpenAI | None = None,
        pool: EndpointPool[openai.AsyncOpenAI] | None = None,
        api_key: str | None = None,
    ) -> None:
        """`api_key`: the key of a server started here (else `config.api_key_env` is read)."""
        self.config = config
        self._api_key = api_key
        if pool is None and client is not None:  # a client made elsewhere (ART's): one replica
            pool = EndpointPool([config.base_url], lambda _url: client, cooldown_s=config.cooldown_s)
        self._pool = pool

    @property
    def model(self) -> str:
        return self.config.model

    def for_rollout(self, task_id: str, sample: int) -> ChatPolicy:
        """The policy for one rollout. A configured `seed` becomes a seed of its own per task and
        sample: one seed for every request would make the samples of a task identical (vLLM
        samples the same tokens for the same prompt and seed), leaving a GRPO group no spread."""
        if self.config.seed is None:
            return self
        digest = hashlib.sha256(f"{self.config.seed}:{task_id}:{sample}".encode()).digest()
        seed = int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
        return ChatPolicy(self.config.model_copy(update={"seed": seed}), pool=self.pool)

    @property
    def pool(self) -> EndpointPool[openai.AsyncOpenAI]:
        """The replicas of `config.base_url` (one per comma-separated URL), made on first use."""
        if self._pool is None:
            self._pool = EndpointPool(
                parse_base_urls(self.config.base_url), self._make_client, cooldown_s=self.config.cooldown_s
            )
        return self._pool

    def _make_client(self, url: str) -> openai.AsyncOpenAI:
        # A server without a key accepts any; "EMPTY" is vLLM's documented placeholder.
        key = self._api_key if self._api_key is not None else key_for(url, self.config.api_key_env)
        return openai.AsyncOpenAI(
            base_url=url,
            api_key=key or NO_KEY,
            timeout=self.config.request_timeout_s,
            max_retries=0,
        )

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The first replica's client (one endpoint: the only one). Requests go through `create`."""
        return self.pool.replicas[0].client

    def endpoint_stats(self) -> list[EndpointStats]:
        """Per-replica counts: requests, failures, times taken out."""
        return self.pool.stats() if self._pool is not None else []

    async def create(self, **kwargs: Any) -> Any:
        """`chat.completions.create(**kwargs)` on the least-loaded replica, failing over to the
        others on a transient error (rollouts.endpoints)."""
        return await self.pool.call(lambda replica: replica.client.chat.completions.create(**kwargs))

    def request_kwargs(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for one turn."""
        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": history_for_request(messages, cfg.think_history),
        }
        optional = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "seed": cfg.seed}
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        if tools:
            kwargs["tools"] = tools
            if cfg.tool_choice is not None:
                kwargs["tool_choice"] = cfg.tool_choice
            if cfg.parallel_tool_calls is not None:
                kwargs["parallel_tool_calls"] = cfg.parallel_tool_calls
        extra = dict(cfg.extra_body)
        if cfg.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = 0
            if cfg.token_ids:
                extra.setdefault("return_tokens_as_token_ids", True)
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    async def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> PolicyTurn:
        """One policy turn. Raises openai errors as they are (the caller decides what is transient)."""
        kwargs = self.request_kwargs(messages, tools)
        start = time.perf_counter()
        try:
            completion = await self.create(**kwargs)
        except json.JSONDecodeError as exc:
            # The SDK parses the body unguarded: a torn or non-JSON reply is the server's fault, and
            # must read as the policy server failing, not as a bug of ours ("unexpected").
            raise PolicyError(f"the server's reply is not JSON ({exc.msg} at char {exc.pos})") from exc
        latency = time.perf_counter() - start
        if not completion.choices:
            raise PolicyError("the server returned no choices")
        choice = completion.choices[0]
        raw = choice.message.model_dump(exclude_none=True)
        parsed = parse_reply(raw, tools_offered=bool(tools), keep_think=self.config.keep_think)
        usage = completion.usage
        return PolicyTurn(
            message=parsed.message,
            content=parsed.content,
            reasoning=parsed.reasoning,
            tool_calls=parsed.tool_calls,
            parse_errors=parsed.parse_errors,
            text_tool_calls=parsed.text_tool_calls,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            logprobs=_token_logprobs(choice) if self.config.logprobs else None,
        )

    async def aclose(self) -> None:
        if self._pool is not None:
            for replica in self._pool.replicas:
                await replica.client.close()
            self._pool = None

    async def __aenter__(self) -> ChatPolicy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _token_logprobs(choice: Any) -> TokenLogprobs | None:
    content = choice.logprobs.content if choice.logprobs else None
    if not content:
        return None
    ids: list[int | None] = []
    tokens: list[str] = []
    for item in content:
        ids.append(_token_id(item.token))
        tokens.append(bytes(item.bytes).decode("utf-8", errors="replace") if item.bytes else valid_text(item.token))
    return TokenLogprobs(token_ids=ids, logprobs=[item.logprob for item in content], tokens=tokens)


def _token_id(token: str) -> int | None:
    # vLLM's `return_tokens_as_token_ids` spells each token "token_id:1234".
    if token.startswith("token_id:"):
        try:
            return int(token.split(":", 1)[1])
        except ValueError:
            return None
    return None
