"""The runtime HTTP API of a running vLLM server: health, the models it answers to, LoRA adapters.

`VLLMClient` needs only a URL, so it serves `python -m serve.lora` (any server started with
runtime LoRA updating) and `VLLMServer` (the servers it owns) alike. The adapter folder must be
readable by the server: vLLM opens it itself.

The key: the one given (a server mcpgym started hands over its own), else the variable
`api_key_env` names (default `VLLM_API_KEY`, what vLLM itself reads), by common.keys' rule. With
neither, no key is sent: a server started without one answers, and one with a key answers 401,
which the error names the variable for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from common.keys import key_for
from common.redact import redact_text, redact_url

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_KEY_ENV = "VLLM_API_KEY"


class VLLMError(RuntimeError):
    """vLLM refused a request (adapter load/unload, listing models) or could not be reached."""


class ServedModel(BaseModel):
    """One entry of /v1/models: the base model (parent None) or an adapter (parent: the base)."""

    id: str
    parent: str | None = None
    root: str | None = None  # for an adapter: the folder it was loaded from

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


def root_url(base_url: str) -> str:
    """`http://host:port/v1` or `http://host:port` -> `http://host:port` (the adapter routes hang off /v1)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def adapter_dir(path: Path | str) -> str:
    """Absolute adapter folder (vLLM resolves relative paths against its own cwd), checked up front
    so a wrong path is a clear FileNotFoundError rather than vLLM's 404."""
    folder = Path(path).expanduser().resolve()
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(2, "no PEFT adapter (adapter_config.json missing)", str(folder))
    return str(folder)


def error_text(response: httpx.Response) -> str:
    """vLLM's own error message when the body carries one, else the body."""
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return response.text.strip()


class VLLMClient:
    """Health, models and adapters of the server at `base_url` (the key: `api_key`, else $`api_key_env`)."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        api_key_env: str = DEFAULT_KEY_ENV,
        timeout_s: float = 120.0,
    ):
        self.root = root_url(base_url)
        self.api_key_env = api_key_env
        key = api_key if api_key is not None else key_for(base_url, api_key_env)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = timeout_s

    def _failure(self, what: str, response: httpx.Response) -> VLLMError:
        text = f"{what} failed ({response.status_code}): {error_text(response)}"
        if response.status_code == 401:
            text += f"; set {self.api_key_env} to the server's key"
        return VLLMError(text)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
                return await client.request(method, f"{self.root}{path}", json=body)
        except httpx.HTTPError as exc:
            reason = f"{type(exc).__name__}: {redact_text(str(exc))}"
            raise VLLMError(f"cannot reach {redact_url(self.root)} ({reason})") from exc

    async def health(self) -> bool:
        try:
            return (await self._request("GET", "/health")).status_code == 200
        except VLLMError:
            return False

    async def list(self) -> list[ServedModel]:
        """The base model first, then the loaded adapters."""
        response = await self._request("GET", "/v1/models")
        if response.status_code != 200:
            raise self._failure("listing models", response)
        return [ServedModel.model_validate(item) for item in response.json()["data"]]

    async def load(self, name: str, path: Path | str, *, replace: bool = False) -> None:
        """Serve the PEFT adapter in `path` as model `name` (`replace` swaps one already loaded)."""
        body = {"lora_name": name, "lora_path": adapter_dir(path), "load_inplace": replace}
        response = await self._request("POST", "/v1/load_lora_adapter", body)
        if response.status_code != 200:
            raise self._failure(f"loading adapter {name!r}", response)

    async def unload(self, name: str) -> None:
        response = await self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code != 200:
            raise self._failure(f"unloading adapter {name!r}", response)
