"""Export a (merged) model folder to GGUF for llama.cpp, Ollama and LM Studio.

    python -m serve.export gguf --weights runs/merged --out policy.q8_0.gguf [--quant q8_0] [--verify]

The conversion is llama.cpp's own `convert_hf_to_gguf.py`, not a re-implementation. PyPI ships it
inside the source distribution of `llama-cpp-python` (vendor/llama.cpp, together with the matching
`gguf-py` and the `conversion/` package it imports); the pinned sdist is fetched once with
`pip download --no-deps --no-binary` (nothing is compiled), and just those files are unpacked
into `$MCPGYM_HOME/tools/llama.cpp-<version>/`. `MCPGYM_LLAMA_CPP_SDIST=/path/to/sdist.tar.gz`
uses a local copy instead (offline machines, CI caches).

Quantisations are the ones the Python converter writes itself (f32, f16, bf16, q8_0, tq1_0,
tq2_0); k-quants (q4_k_m, ...) need llama.cpp's compiled `llama-quantize`, run on the f16 output.
`--verify` loads the GGUF back with transformers (which de-quantises it) and checks that it
predicts the same next tokens as the source model on a probe prompt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from common.home import file_lock, mcpgym_home

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
SDIST_ENV = "MCPGYM_LLAMA_CPP_SDIST"
QUANTS = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0")
# What the converter needs from the sdist's vendor/llama.cpp (checked after unpacking).
_NEEDED = ("convert_hf_to_gguf.py", "conversion", "gguf-py")
_PROBE = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


class ExportError(RuntimeError):
    """The converter could not be fetched or failed on this model (message: the reason)."""


class GGUFSummary(BaseModel):
    path: Path
    size_bytes: int
    architecture: str
    file_type: str
    tensors: int
    has_chat_template: bool


def converter_dir() -> Path:
    return mcpgym_home() / "tools" / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def _download_sdist(dest: Path) -> Path:
    local = os.environ.get(SDIST_ENV)
    if local:
        if not Path(local).is_file():
            raise ExportError(f"{SDIST_ENV}={local} is not a file")
        return Path(local)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q"]
    cmd += ["--disable-pip-version-check", "-d", str(dest), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ExportError(
            f"pip download llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} (sdist) failed ({tail[0]}); "
            f"set {SDIST_ENV}=/path/to/llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
        )
    return found[0]


def ensure_converter() -> Path:
    """The folder holding llama.cpp's convert_hf_to_gguf.py (+ conversion/, gguf-py/), fetched once."""
    target = converter_dir()
    if all((target / name).exists() for name in _NEEDED):
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if all((target / name).exists() for name in _NEEDED):
            return target
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
            sdist = _download_sdist(Path(tmp))
            unpacked = Path(tmp) / "llama.cpp"
            with tarfile.open(sdist) as archive:
                members = []
                for member in archive.getmembers():
                    parts = Path(member.name).parts
                    if len(parts) > 3 and parts[1:3] == ("vendor", "llama.cpp") and parts[3] in _NEEDED:
                        member.name = str(Path(*parts[3:]))
                        members.append(member)
                archive.extractall(unpacked, members=members, filter="data")
            missing = [name for name in _NEEDED if not (unpacked / name).exists()]
            if missing:
                raise ExportError(
                    f"{sdist.name} has no vendor/llama.cpp/{missing[0]}; is it the llama-cpp-python sdist?"
                )
            if target.exists():
                shutil.rmtree(target)
            os.replace(unpacked, target)
    return target


def convert_to_gguf(model_dir: Path, out: Path, *, quant: str = "q8_0") -> Path:
    """Run llama.cpp's converter on `model_dir`; the file appears at `out` only when it succeeded."""
    if quant not in QUANTS:
        raise ExportError(f"--quant must be one of {', '.join(QUANTS)} (k-quants need llama.cpp's llama-quantize)")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(2, "not a model folder (config.json missing)", str(model_dir))
    tools = ensure_converter()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tools / "gguf-py"), str(tools)])}
    cmd = [sys.executable, str(tools / "convert_hf_to_gguf.py"), str(model_dir)]
    cmd += ["--outfile", str(partial), "--outtype", quant]
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "no output")
        raise ExportError(f"llama.cpp's converter failed on {model_dir}: {reason}")
    os.replace(partial, out)
    return out


def summarise(path: Path) -> GGUFSummary:
    """Read the written file back with the `gguf` package (its header, metadata and tensor table)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def field(key: str) -> Any:
        item = reader.get_field(key)
        return item.contents() if item is not None else None

    file_type = field("general.file_type")
    return GGUFSummary(
        path=path,
        size_bytes=path.stat().st_size,
        architecture=str(field("general.architecture")),
        file_type=gguf.LlamaFileType(file_type).name if file_type is not None else "unknown",
        tensors=len(reader.tensors),
        has_chat_template=field("tokenizer.chat_template") is not None,
    )


def verify_gguf(model_dir: Path, gguf_path: Path, *, probe: str = _PROBE, tokens: int = 8) -> float:
    """Share of greedy next-token predictions on `probe` (+ its continuation) where the GGUF agrees."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    exported = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    ids = tokenizer(probe, return_tensors="pt").input_ids
    with torch.no_grad():
        generated = source.generate(ids, max_new_tokens=tokens, do_sample=False)
        expected = source(generated).logits.argmax(-1)
        got = exported(generated).logits.argmax(-1)
    return float((expected == got).float().mean())


def _parser() -> Any:
    from common.cli import ArgumentParser
    from common.flags import add_flag

    parser = ArgumentParser(prog="python -m serve.export", description="Export a model folder (e.g. a merge).")
    sub = parser.add_subparsers(dest="format", required=True)
    gguf = sub.add_parser("gguf", help="GGUF via llama.cpp's convert_hf_to_gguf.py")
    add_flag(gguf, "--weights", type=Path, required=True, aliases=("--model",), help="safetensors + tokenizer folder")
    add_flag(gguf, "--out", type=Path, required=True, help="the .gguf file to write")
    gguf.add_argument("--quant", choices=QUANTS, default="q8_0")
    gguf.add_argument("--verify", action="store_true", help="check next-token agreement with the source model")
    gguf.add_argument("--min-agreement", type=float, default=0.9, help="with --verify: fail below this share")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not (args.weights / "config.json").is_file():
        raise FileNotFoundError(2, "not a model folder (config.json missing)", str(args.weights))
    print(f"converting {args.weights} to {args.quant} GGUF with llama.cpp's converter ...", file=sys.stderr)
    path = convert_to_gguf(args.weights.expanduser().resolve(), args.out, quant=args.quant)
    summary = summarise(path)
    print(summary.model_dump_json())
    if args.verify:
        agreement = verify_gguf(args.weights, path)
        print(f"next-token agreement with the source model: {agreement:.1%}")
        if agreement < args.min_agreement:
            print(f"below --min-agreement {args.min_agreement:.0%}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main, user_errors=(ExportError,))
