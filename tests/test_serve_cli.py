"""serve's CLIs without a model server: `serve.vllm --dry-run` and the family profiles, bad flags
(one line, exit 2), and `serve.bench` against the scripted OpenAI-compatible TEST server
(tests/fixtures/policy_server.py), which makes tool-call parsing and errors deterministic."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from serve.bench import BenchConfig, Percentiles, load_report, run_bench
from serve.models import MCPGYM_TEMPLATE, serving_profile
from serve.workloads import agent_requests

REPO = Path(__file__).resolve().parents[1]


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _fake_model(folder: Path, model_type: str, tokens: list[str], template: str | None = None) -> Path:
    """Just the files serving_profile reads (no weights: the dry run never loads them)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    added = {str(i): {"content": token} for i, token in enumerate(tokens)}
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


def _adapter(folder: Path, rank: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return folder


def test_profiles_by_family(tmp_path: Path) -> None:
    qwen = _fake_model(tmp_path / "qwen", "qwen3", ["<|im_start|>", "<tool_call>"], template="{{ qwen }}")
    llama = _fake_model(tmp_path / "llama", "llama", ["<|begin_of_text|>", "<|eot_id|>"])
    smol = _fake_model(tmp_path / "smol", "llama", ["<|im_start|>", "<|im_end|>"])
    mistral = _fake_model(tmp_path / "mistral", "mistral", ["[INST]"])
    assert serving_profile(qwen).model_dump() == {
        "family": "qwen",
        "tool_call_parser": "hermes",
        "chat_template": qwen / "chat_template.jinja",  # its own
    }
    assert (serving_profile(llama).tool_call_parser, serving_profile(llama).chat_template) == ("llama3_json", None)
    assert serving_profile(mistral).tool_call_parser == "mistral"
    # A plain ChatML model gets mcpgym's tool-aware template, the one the policy is trained with.
    assert (serving_profile(smol).family, serving_profile(smol).chat_template) == ("chatml", MCPGYM_TEMPLATE)
    assert "<tool_call>" in MCPGYM_TEMPLATE.read_text()


def test_dry_run_prints_the_exact_command(tmp_path: Path) -> None:
    model = _fake_model(tmp_path / "Qwen3-8B", "qwen3", ["<|im_start|>"])
    adapter = _adapter(tmp_path / "adapter", rank=32)
    argv = ["-m", "serve.vllm", "--weights", str(model), "--lora", f"mine={adapter}", "--port", "8123"]
    result = _cli(*argv, "--device", "gpu", "--gpu-memory-utilization", "0.8", "--max-model-len", "8192", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "# family: qwen; adapters: mine"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=False" in lines  # --lora adapters are served from the start
    assert "VLLM_API_KEY='<hidden>'" in lines  # the server has a key; the dry run does not print it
    command = shlex.split(lines[-1])
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert value("--model") == str(model)
    assert value("--port") == "8123"
    assert value("--tool-call-parser") == "hermes"
    assert value("--max-lora-rank") == "32"  # fits the adapter
    assert value("--gpu-memory-utilization") == "0.8"
    assert value("--max-model-len") == "8192"
    assert value("--dtype") == "auto"
    assert value("--lora-modules") == f"mine={adapter.resolve()}"
    assert value("--middleware") == "serve.vllm_guard.KeyGuard"
    for flag in ("--enable-auto-tool-choice", "--return-tokens-as-token-ids", "--enable-lora"):
        assert flag in command
    assert "--enforce-eager" not in command and "--chat-template" not in command  # GPU; Qwen's own template


def test_dry_run_on_cpu_with_the_embedded_model() -> None:
    from train.models import ensure_base_model

    model = ensure_base_model()
    result = _cli("-m", "serve.vllm", "--device", "cpu", "--no-lora", "--dry-run")
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.strip().splitlines()[-1])
    assert command[command.index("--chat-template") + 1] == str(model / "chat_template.jinja")
    assert command[command.index("--dtype") + 1] == "float32" and "--enforce-eager" in command
    assert "--enable-lora" not in command and command[command.index("--port") + 1] == "8000"
    assert any(line.startswith("VLLM_CPU_KVCACHE_SPACE=") for line in result.stdout.splitlines())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-m", "serve.vllm", "--port", "0"], "--port must be 1-65535"),
        (["-m", "serve.vllm", "--bogus"], "unrecognized arguments: --bogus"),
        (["-m", "serve.vllm", "--lora", "nodir"], "--lora wants NAME=DIR"),
        (["-m", "serve.vllm", "--lora", "a=/nonexistent/adapter"], "adapter_config.json missing"),
        (["-m", "serve.vllm", "--weights", "/nonexistent/model"], "no such model folder"),
        (["-m", "serve.vllm", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization must be in (0, 1]"),
        (["-m", "serve.vllm", "--max-lora-rank", "7"], "invalid choice"),
        (["-m", "serve.lora", "load", "x"], "required: path"),
        (["-m", "serve.lora", "frobnicate"], "invalid choice"),
        (["-m", "serve.lora", "--base-url", "http://127.0.0.1:9/v1", "list"], "cannot reach http://127.0.0.1:9"),
        (["-m", "serve.bench", "--concurrency", "0,4"], "expected positive integers"),
        (["-m", "serve.bench", "--workload", "chat,video"], "workloads are chat, agent"),
        (["-m", "serve.bench", "--compare", "only-one.json"], "--compare needs two or more"),
        (["-m", "serve.bench", "--base-url", "http://127.0.0.1:9/v1"], "cannot list models"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], expected: str) -> None:
    result = _cli(*argv)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _cli("-m", "serve.vllm", "--port", str(port), "--no-lora")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use; pick another with --port"


def test_percentiles_are_nearest_rank() -> None:
    stats = Percentiles.of([4.0, 1.0, 3.0, 2.0])
    assert stats is not None
    assert (stats.p50, stats.p95, stats.p99, stats.max, stats.mean) == (2.0, 4.0, 4.0, 4.0, 2.5)
    assert Percentiles.of([]) is None


def _config(url: str, **fields: object) -> BenchConfig:
    base = {"base_url": url, "model": "scripted", "concurrency": [1, 3], "requests": 6, "warmup": 0}
    return BenchConfig(**{**base, **fields})


@pytest.fixture(scope="module")
async def agent_pool() -> dict:
    import envs

    async with envs.load("energy") as env:  # serve.workloads takes a started env (serve does not import envs)
        return {"agent": await agent_requests(env, tasks=6)}


async def test_bench_counts_tool_calls_that_parse(scripted_server, agent_pool: dict) -> None:
    scripted_server.record = False
    report = await run_bench(
        _config(scripted_server.base_url, workloads=["agent"]), pools=agent_pool, show_progress=False
    )
    for level in report.results:
        assert level.completed == 6 and level.error_rate == 0.0
        assert level.tool_calls.requests_with_tools == 6
        assert level.tool_calls.replies > 0 and level.tool_calls.parse_rate == 1.0
        assert level.ttft_s is None and level.itl_s is None  # not streamed
    # The same replies written as <tool_call> text that no parser turned into tool_calls do not parse.
    scripted_server.set_script(tool_call_form="text")
    scripted_server.record = False
    report = await run_bench(
        _config(scripted_server.base_url, workloads=["agent"]), pools=agent_pool, show_progress=False
    )
    assert all(level.tool_calls.replies > 0 and level.tool_calls.parse_rate == 0.0 for level in report.results)
    scripted_server.set_script(unknown_tool=True)
    config = _config(scripted_server.base_url, workloads=["agent"], requests=1)
    report = await run_bench(config, pools=agent_pool, show_progress=False)
    assert report.results[0].tool_calls.parse_rate == 0.0  # a call to a tool that was not offered


async def test_bench_reports_errors_and_stops_by_itself(scripted_server) -> None:
    scripted_server.set_script(fail_status=500, fail_times=-1)
    report = await run_bench(_config(scripted_server.base_url, workloads=["chat"]), show_progress=False)
    for level in report.results:
        assert (level.requests, level.completed, level.error_rate) == (6, 0, 1.0)
        assert level.latency_s is None and level.error_samples[0].startswith("HTTP 500")
    scripted_server.set_script(delay_s=0.5)
    config = _config(scripted_server.base_url, workloads=["chat"], concurrency=[1], requests=1000, max_seconds=1.0)
    report = await run_bench(config, show_progress=False)
    assert 1 <= report.results[0].requests <= 3  # the level's time limit ended it


def test_bench_cli_writes_json_and_charts_and_compares(scripted_server, tmp_path: Path) -> None:
    url = scripted_server.base_url
    runs = []
    for label in ("base", "merged"):
        out = tmp_path / label
        argv = ["-m", "serve.bench", "--base-url", url, "--model", "m", "--concurrency", "1,2", "--requests", "3"]
        result = _cli(*argv, "--label", label, "--out-dir", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
        assert "agent" in result.stdout and "tool-parse" in result.stdout
        report = load_report(out / "bench.json")
        assert report.label == label and len(report.results) == 4
        assert all((out / name).read_bytes()[:4] == b"\x89PNG" for name in ("throughput.png", "latency.png"))
        runs.append(out / "bench.json")
    result = _cli("-m", "serve.bench", "--compare", *map(str, runs), "--out-dir", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    for name in ("compare_throughput.png", "compare_latency.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 10_000
    (tmp_path / "bad.json").write_text('{"not": "a report"}')
    result = _cli("-m", "serve.bench", "--compare", str(runs[0]), str(tmp_path / "bad.json"))
    assert result.returncode == 2 and "is not a serve.bench report" in result.stderr
