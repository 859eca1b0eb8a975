"""Where a judge model lives: any OpenAI-compatible endpoint (a local vLLM, a hosted API).

The key is read from the environment when a request is made (`JUDGE_API_KEY`,
else `OPENAI_API_KEY`) and never stored in a config, a record or a log.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Model prefixes litellm routes to an OpenAI-compatible server at `api_base`.
OPENAI_COMPATIBLE = ("openai/", "hosted_vllm/")


class JudgeEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # "Qwen/Qwen3-8B" on a base URL, or a litellm name ("openai/gpt-4.1-mini") for a hosted judge
    base_url: str | None = None
    api_key_env: str = "JUDGE_API_KEY"
    timeout_s: float = 120.0
    temperature: float | None = 0.0
    # Sent as-is in every request body, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3 on vLLM.
    extra_body: dict[str, Any] = Field(default_factory=dict)

    def api_key(self) -> str | None:
        key = os.environ.get(self.api_key_env) or os.environ.get("OPENAI_API_KEY")
        return key or ("EMPTY" if self.base_url else None)  # a local vLLM takes any key

    def litellm_model(self) -> str:
        """The name litellm routes: on a base URL always the OpenAI-compatible route,
        because a served name like "Qwen/Qwen3-8B" would otherwise read as a provider."""
        if self.base_url and not self.model.startswith(OPENAI_COMPATIBLE):
            return f"openai/{self.model}"
        return self.model

    def served_model(self) -> str:
        """The name the server knows (what an OpenAI client sends)."""
        for prefix in OPENAI_COMPATIBLE:
            if self.model.startswith(prefix):
                return self.model[len(prefix) :]
        return self.model

    def litellm_params(self) -> dict[str, Any]:
        # Retries are ours (counted, then infra-failed), so litellm's and the SDK's are off.
        params: dict[str, Any] = {"timeout": self.timeout_s, "num_retries": 0, "max_retries": 0}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.extra_body:
            params["extra_body"] = self.extra_body
        if self.base_url:
            params["api_base"] = self.base_url
        key = self.api_key()
        if key:
            params["api_key"] = key
        return params
