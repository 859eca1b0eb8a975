"""What `python -m train.eval` evaluates: a model spec (`URL#MODEL`, a LoRA checkpoint or model
folder, or the trajectory JSONL of an evaluation already run), and the vLLM servers it starts
here for folders (one per base model; each LoRA checkpoint is loaded into its base's server at
runtime, which only the holder of that server's own key may do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from common.cli import UsageError


class ModelSpec(BaseModel):
    """What to evaluate: an endpoint, or a folder to serve here."""

    label: str
    base_url: str | None = None
    model: str | None = None
    folder: Path | None = None  # a LoRA checkpoint or a full model folder
    trajectories: Path | None = None  # an evaluation already run (its trajectory JSONL): nothing to serve


def parse_spec(text: str) -> ModelSpec:
    """`URL#MODEL` or a folder (LoRA checkpoint or model)."""
    if "#" in text and text.split("#", 1)[0].startswith(("http://", "https://")):
        url, model = text.split("#", 1)
        if not model:
            raise UsageError(f"{text!r}: give the model name after '#' (URL#MODEL)")
        return ModelSpec(label=model, base_url=url, model=model)
    folder = Path(text).expanduser()
    if folder.is_file() and folder.suffix == ".jsonl":
        return ModelSpec(label=folder.stem, trajectories=folder.resolve())
    if not folder.is_dir():
        raise UsageError(f"{text!r} is neither a folder (checkpoint or model), URL#MODEL nor a trajectory .jsonl")
    if not (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise UsageError(f"{folder}: not a LoRA checkpoint (adapter_config.json) nor a model (config.json)")
    return ModelSpec(label=folder.name if folder.name else str(folder), folder=folder.resolve())


def adapter_base(folder: Path, override: str | None = None) -> Path:
    """The base model a LoRA checkpoint was trained on (its adapter_config.json), or `override`."""
    if override:
        return Path(override).expanduser()
    config = json.loads((folder / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if base and Path(base).is_dir():
        return Path(base)
    from train.models import ensure_base_model

    return ensure_base_model()  # checkpoints of the embedded model may name it by its hub id


class Served:
    """Starts one vLLM per base model for the folder specs; endpoints pass through."""

    def __init__(self, *, max_model_len: int, base_model: str | None) -> None:
        self.max_model_len = max_model_len
        self.base_model = base_model
        self.servers: dict[Path, Any] = {}

    def server_config(self, base: Path) -> Any:
        """The vLLM for base model `base`: its own random key, and runtime LoRA loading because the
        checkpoints evaluated load into the running server."""
        from serve.vllm import VLLMConfig

        return VLLMConfig(
            model=base, served_model_name="base", enable_lora=True, runtime_lora=True, max_model_len=self.max_model_len
        )

    async def resolve(self, spec: ModelSpec) -> tuple[str, str, str | None]:
        """(base_url, served model name, the key of a server started here or None) for a spec."""
        if spec.folder is None:
            return str(spec.base_url), str(spec.model), None
        from serve.vllm import VLLMServer

        is_adapter = (spec.folder / "adapter_config.json").is_file()
        base = adapter_base(spec.folder, self.base_model) if is_adapter else spec.folder
        server = self.servers.get(base)
        if server is None:
            print(f"eval: starting vLLM for {base} ...", file=sys.stderr)
            server = VLLMServer(self.server_config(base))
            self.servers[base] = server
            await server.start()
        if not is_adapter:
            return server.base_url, server.served_model_name, server.api_key
        name = f"eval{len(self.servers)}-{abs(hash(spec.folder)) % 10**6}"
        await server.load_lora(name, spec.folder, replace=True)
        return server.base_url, name, server.api_key

    async def aclose(self) -> None:
        for server in self.servers.values():
            await server.stop()
