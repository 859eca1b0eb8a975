"""ART's GPU and hosted backends behind `--backend` (local, megatron, serverless, tinker), exercised
up to the first call that needs a GPU or the network: construction, configuration, and the one
`error:` line (exit 2) a user gets without the extra, the key or the GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollouts.jsonl import write_jsonl
from tests.test_train_sft import dataset
from train.art_adapter import make_model
from train.backends import BACKENDS, make_backend
from train.backends.local import BackendUnavailable, check_gpu_flags, cuda_gpus, gpu_ids, local_backend_missing
from train.backends.model_support import megatron_importable

REPO = Path(__file__).resolve().parents[1]
QWEN3 = "Qwen/Qwen3-4B-Instruct-2507"


def cli(module: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=300,
    )


def without(*names: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in names}


# --------------------------------------------------------------------------- ART without Megatron


def test_local_register_path_works_without_megatron(tmp_path: Path) -> None:
    """ART 0.5.18's `LocalBackend.register` builds its config with `art.dev.get_model_config`, which
    imports Megatron; with the stand-in it runs ART's own registry (fresh interpreter: the import
    state is the point)."""
    if megatron_importable():
        pytest.skip("Megatron is installed here: ART's own handlers load")
    script = textwrap.dedent(f"""
        import json
        try:
            import art.dev.get_model_config
        except ModuleNotFoundError as exc:
            bare = exc.name
        else:
            bare = None
        from train.backends.model_support import allow_without_megatron
        installed = allow_without_megatron()
        from art.dev.get_model_config import get_model_config
        from art.megatron.model_support import get_model_support_handler
        qwen3 = get_model_config({QWEN3!r}, {str(tmp_path / "a")!r}, None)
        qwen35 = get_model_config("Qwen/Qwen3.5-4B", {str(tmp_path / "b")!r}, None)
        handler = get_model_support_handler({QWEN3!r})
        try:
            handler.to_bridge_provider
        except RuntimeError as exc:
            refused = str(exc)
        print(json.dumps({{"bare": bare, "installed": installed, "again": allow_without_megatron(),
            "qwen3": qwen3["peft_args"]["target_modules"], "qwen35": qwen35["peft_args"]["target_modules"],
            "sleep": qwen3["engine_args"]["enable_sleep_mode"], "key": handler.key, "refused": refused}}))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300, env=os.environ.copy()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["bare"] == "megatron"  # the failure on a plain GPU install
    assert got["installed"] is True and got["again"] is False
    assert got["qwen3"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert "in_proj_qkv" in got["qwen35"]  # Qwen3.5's own spec in ART's registry, not a default
    assert got["sleep"] is True  # shared mode: vLLM sleeps while the trainer runs
    assert got["key"] == "qwen3_dense" and "megatron-core" in got["refused"]


# --------------------------------------------------------------------------- what each needs


def test_every_art_backend_is_a_choice() -> None:
    from train.grpo import build_parser as grpo_parser
    from train.sft import build_parser as sft_parser

    assert BACKENDS == ("torch", "local", "megatron", "serverless", "tinker")
    for parser in (grpo_parser(), sft_parser()):
        action = next(a for a in parser._actions if "--backend" in a.option_strings)
        assert tuple(action.choices) == BACKENDS


def test_local_names_what_is_missing_here() -> None:
    import importlib.util

    with pytest.raises(BackendUnavailable) as caught:
        make_backend("local", path=".art")
    reason = str(caught.value)
    if importlib.util.find_spec("unsloth") is None:
        assert reason.startswith("--backend local needs the gpu extra") and "constraints/gpu.txt" in reason
    elif cuda_gpus() == 0:
        assert "needs a CUDA GPU" in reason
    assert reason == local_backend_missing()


def test_megatron_needs_megatron() -> None:
    if megatron_importable():
        pytest.skip("Megatron is installed here")
    with pytest.raises(BackendUnavailable, match="megatron-core and megatron-bridge"):
        make_backend("megatron", path=".art")


async def test_serverless_reads_its_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(BackendUnavailable, match="needs WANDB_API_KEY"):
        make_backend("serverless", path=".art")
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    backend = make_backend("serverless", path=".art")  # constructs ART's client; no request yet
    try:
        from art.serverless import ServerlessBackend

        assert isinstance(backend, ServerlessBackend)
        assert backend._base_url.startswith("https://api.training.wandb.ai")
        assert backend._client.api_key == "not-a-real-key"
    finally:
        await backend.close()


def test_tinker_needs_its_key_and_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    with pytest.raises(BackendUnavailable, match="needs TINKER_API_KEY"):
        make_backend("tinker", path=tmp_path)
    monkeypatch.setenv("TINKER_API_KEY", "not-a-real-key")
    if importlib.util.find_spec("tinker") is None:
        with pytest.raises(BackendUnavailable, match=r"the tinker extra .*pip install -e '\.\[tinker\]'"):
            make_backend("tinker", path=tmp_path)
    else:
        from art.tinker_native import TinkerNativeBackend

        assert isinstance(make_backend("tinker", path=tmp_path), TinkerNativeBackend)


# --------------------------------------------------------------------------- dedicated GPUs


def test_dedicated_gpus_go_to_arts_model_config() -> None:
    model = make_model("m", "p", QWEN3, kind="local", trainer_gpus=[0, 1], inference_gpus=[2])
    assert model._internal_config["trainer_gpu_ids"] == [0, 1]
    assert model._internal_config["inference_gpu_ids"] == [2]
    shared = make_model("m", "p", QWEN3, kind="local")
    assert "trainer_gpu_ids" not in (shared._internal_config or {})
    with pytest.raises(ValueError, match="must not overlap"):  # ART's own rule
        make_model("m", "p", QWEN3, kind="local", trainer_gpus=[0], inference_gpus=[0])


def test_gpu_flags_are_checked_by_arts_rules() -> None:
    assert gpu_ids("0,1") == [0, 1]
    with pytest.raises(ValueError):
        gpu_ids("0,a")
    check_gpu_flags("local", [0], [1])
    check_gpu_flags("torch", None, None)
    with pytest.raises(ValueError, match="--trainer-gpus must start at GPU 0"):
        check_gpu_flags("local", [1], [0])
    with pytest.raises(ValueError, match="--trainer-gpus and --inference-gpus must both be set"):
        check_gpu_flags("local", [0], None)
    with pytest.raises(ValueError, match="for --backend local, not torch"):
        check_gpu_flags("torch", [0], [1])


def test_dedicated_mode_counts_the_gpus_it_needs() -> None:
    if cuda_gpus() >= 2:
        pytest.skip("two GPUs here")
    reason = local_backend_missing(gpus=2)
    assert reason is not None and reason.startswith("--backend local needs")


# --------------------------------------------------------------------------- the CLIs: one line, exit 2


def test_grpo_cli_without_a_key_is_one_line(tmp_path: Path) -> None:
    done = cli(
        "train.grpo",
        *("--backend", "serverless", "--runs-dir", str(tmp_path / "runs"), "--art-path", str(tmp_path / ".art")),
        cwd=tmp_path,
        env=without("WANDB_API_KEY"),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: --backend serverless needs WANDB_API_KEY (a W&B API key with W&B Training access)"]


def test_grpo_cli_rejects_overlapping_gpus(tmp_path: Path) -> None:
    args = ("--backend", "local", "--trainer-gpus", "0", "--inference-gpus", "0")
    done = cli("train.grpo", *args, cwd=tmp_path, env=without())
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --trainer-gpus and --inference-gpus must not overlap"]


def test_sft_cli_without_a_key_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    write_jsonl(path, dataset())
    args = ("--trajectories", str(path), "--backend", "tinker", "--art-path", str(tmp_path / ".art"))
    done = cli("train.sft", *args, cwd=tmp_path, env=without("TINKER_API_KEY"))
    assert done.returncode == 2
    needs_model = "error: --backend tinker needs --base-model (a Hugging Face model id or folder)"
    assert done.stderr.strip().splitlines()[-1] == needs_model
    done = cli("train.sft", *args, "--base-model", "Qwen/Qwen3-8B", cwd=tmp_path, env=without("TINKER_API_KEY"))
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "error: --backend tinker needs TINKER_API_KEY (a Tinker API key)"
