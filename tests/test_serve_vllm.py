"""The serving CLIs against one real vLLM (the CPU build) serving the embedded model.

One `python -m serve.vllm` process is started for the whole module (vLLM takes ~30-60 s to start on
2 cores) and the tests run in file order against it: the launcher's announcement and its curl, a
tool-call request, adapters through `python -m serve.lora` (and none without the key), a few seconds
of `python -m serve.bench`, the dashboard's metrics on the live `/metrics`, and finally a clean
Ctrl-C stop. The launcher runs with the user's own key ($VLLM_API_KEY), which every client sends.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.common import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ADAPTER_NAME = "first"
KEY = secrets.token_urlsafe(32)  # the user's own key for the server they start
WITH_KEY = {**os.environ, "VLLM_API_KEY": KEY}
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "vllm.json"


def make_adapter(base: Path, out: Path, *, rank: int = 8) -> Path:
    """A LoRA whose B is random (peft starts B at zero, which would change nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(out)
    return out


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid` (vLLM's frontend, engine core, workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


@dataclass
class Launched:
    process: subprocess.Popen[str]
    port: int
    announcement: list[str]
    adapter: Path
    model_dir: Path
    vllm_pids: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def line(self, prefix: str) -> str:
        return next(line for line in self.announcement if line.startswith(prefix))


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    from train.models import ensure_base_model

    model_dir = ensure_base_model()
    work = tmp_path_factory.mktemp("serve")
    adapter = make_adapter(model_dir, work / "adapter")
    port = free_port()
    argv = [sys.executable, "-m", "serve.vllm", "--weights", str(model_dir), "--lora", f"{ADAPTER_NAME}={adapter}"]
    argv += ["--port", str(port), "--log-dir", str(work / "logs"), "--max-model-len", "4096", "--runtime-lora"]
    process = subprocess.Popen(argv, cwd=REPO, env=WITH_KEY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    announcement: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line:  # the launcher exited before it was ready
                pytest.fail(f"serve.vllm exited {process.wait()}: {process.stderr.read()[-3000:]}")  # type: ignore[union-attr]
            announcement.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops"):
                break
        else:
            pytest.fail("serve.vllm did not announce readiness in time")
        yield Launched(process, port, announcement, adapter, model_dir, _children(process.pid))
    finally:
        if process.poll() is None:  # a failed test left it running: stop it the documented way
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        for pid in _children(process.pid):
            os.kill(pid, signal.SIGKILL)


def _run(*argv: str, timeout: float = 180, env: dict[str, str] = WITH_KEY) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_launcher_announces_endpoint_models_and_a_working_curl(launched: Launched) -> None:
    assert launched.line("ready: ") == f"ready: {launched.base_url}"
    models = launched.line("models: ").removeprefix("models: ").split(", ")
    assert models == [launched.model_dir.name, ADAPTER_NAME]
    assert "tool-call parser: hermes" in launched.line("family: ")
    assert launched.vllm_pids, "vLLM runs as a child of the launcher"
    assert launched.line("key: ") == "key: $VLLM_API_KEY (clients: --api-key-env VLLM_API_KEY)"
    assert KEY not in "\n".join(launched.announcement)
    curl = launched.line("curl ")
    assert '"max_tokens":64' in curl
    short = curl.replace('"max_tokens":64', '"max_tokens":8')  # the same request, quicker on a busy CPU
    # Pasted into a shell that holds the key, as the user would.
    reply = subprocess.run(["bash", "-c", short], env=WITH_KEY, capture_output=True, text=True, timeout=300, check=True)
    body = json.loads(reply.stdout)
    assert body["object"] == "chat.completion", body
    assert body["model"] == launched.model_dir.name


async def test_tool_call_request_with_token_id_logprobs(launched: Launched) -> None:
    client = openai.AsyncOpenAI(base_url=launched.base_url, api_key=KEY)
    tool = {
        "type": "function",
        "function": {
            "name": "list_bookings",
            "description": "List your pipeline capacity bookings",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    reply = await client.chat.completions.create(
        model=launched.model_dir.name,
        messages=[{"role": "user", "content": "Show me my bookings."}],
        tools=[tool],
        # With the hermes parser vLLM 0.32 leaves generation unconstrained even for a named choice.
        tool_choice={"type": "function", "function": {"name": "list_bookings"}},
        max_tokens=32,
        temperature=0.0,
        logprobs=True,
    )
    choice = reply.choices[0]
    message = choice.message
    if message.tool_calls:  # a complete call: the hermes parser turned it into tool_calls
        call = message.tool_calls[0]
        assert call.function.name == "list_bookings"
        assert isinstance(json.loads(call.function.arguments), dict)
        assert "<tool_call>" not in (message.content or "")
    else:
        # The untrained 135M model copies the schema into the arguments and runs out of tokens: the
        # template did offer the tool in hermes form (the model answers in it), and the parser rightly
        # leaves an unfinished block as text. SFT is what teaches it to close the call.
        assert choice.finish_reason == "length"
        assert (message.content or "").startswith('<tool_call>\n{"name": "list_bookings"'), message.content
        call = openai.types.chat.ChatCompletionMessageToolCall(
            id="call_0", type="function", function={"name": "list_bookings", "arguments": "{}"}
        )
    tokens = [item.token for item in reply.choices[0].logprobs.content]
    assert tokens and all(re.fullmatch(r"token_id:\d+", token) for token in tokens)
    # A conversation with earlier calls and their results goes through the served chat template.
    follow_up = await client.chat.completions.create(
        model=ADAPTER_NAME,
        messages=[
            {"role": "user", "content": "Show me my bookings."},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"bookings": [], "total_mmcfd": 0}'},
        ],
        tools=[tool],
        max_tokens=16,
        temperature=0.0,
    )
    assert follow_up.choices[0].finish_reason in {"stop", "length", "tool_calls"}
    assert follow_up.usage.prompt_tokens > 80  # the tools block and the tool result were rendered


def test_lora_cli_load_list_unload(launched: Launched) -> None:
    url = ["--base-url", launched.base_url]
    loaded = _run("-m", "serve.lora", *url, "load", "second", str(launched.adapter))
    assert loaded.returncode == 0, loaded.stderr
    listed = _run("-m", "serve.lora", *url, "list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    by_id = {row["id"]: row for row in rows}
    assert set(by_id) == {launched.model_dir.name, ADAPTER_NAME, "second"}
    assert by_id["second"]["parent"] == launched.model_dir.name
    assert by_id["second"]["root"] == str(launched.adapter.resolve())
    reply = httpx.post(
        f"{launched.base_url}/chat/completions",
        json={"model": "second", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    # Without the key no adapter loads: neither vLLM's route nor SageMaker's /adapters (which vLLM's
    # own key check leaves open; serve.vllm_guard closes it), nor serve.lora without $VLLM_API_KEY.
    root = f"http://127.0.0.1:{launched.port}"
    poison = {"lora_name": "second", "lora_path": str(launched.adapter), "load_inplace": True}
    assert httpx.post(f"{root}/v1/load_lora_adapter", json=poison, timeout=60).status_code == 401
    assert (
        httpx.post(f"{root}/adapters", json={"name": "third", "src": str(launched.adapter)}, timeout=60).status_code
        == 401
    )
    keyless = {k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}
    refused = _run("-m", "serve.lora", *url, "load", "third", str(launched.adapter), env=keyless)
    assert refused.returncode == 2 and "(401)" in refused.stderr and "VLLM_API_KEY" in refused.stderr
    assert _run("-m", "serve.lora", *url, "unload", "second").returncode == 0
    listed = _run("-m", "serve.lora", "list", *url)
    assert "second" not in listed.stdout and "third" not in listed.stdout and ADAPTER_NAME in listed.stdout
    again = _run("-m", "serve.lora", *url, "unload", "second")
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1 and "second" in again.stderr


def test_bench_against_the_server(launched: Launched, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["-m", "serve.bench", "--base-url", launched.base_url, "--concurrency", "1,2", "--requests", "2"]
    argv += ["--max-tokens", "12", "--stream", "--out-dir", str(out), "--no-progress", "--warmup", "0"]
    argv += ["--api-key-env", "VLLM_API_KEY"]
    result = _run(*argv, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "bench.json").read_text())
    assert report["model"] == launched.model_dir.name  # the endpoint's first model
    assert [(r["workload"], r["concurrency"]) for r in report["results"]] == [
        ("chat", 1),
        ("chat", 2),
        ("agent", 1),
        ("agent", 2),
    ]
    for level in report["results"]:
        assert level["requests"] == 2 and level["completed"] == 2 and level["error_rate"] == 0.0
        assert level["requests_per_s"] > 0 and level["output_tokens"] > 0 and level["output_tokens_per_s"] > 0
        for key in ("latency_s", "ttft_s", "itl_s", "tpot_s"):
            stats = level[key]
            assert set(stats) == {"mean", "p50", "p95", "p99", "max"}
            assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
        assert level["ttft_s"]["max"] <= level["latency_s"]["max"]
        tools = level["tool_calls"]
        assert tools["requests_with_tools"] == (2 if level["workload"] == "agent" else 0)
        assert set(tools) == {"requests_with_tools", "replies", "parsed", "parse_rate"}
    for chart in report["charts"]:
        assert Path(chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {Path(c).name for c in report["charts"]} == {"throughput.png", "latency.png"}


def test_dashboard_metrics_are_exported_by_the_live_server(launched: Launched) -> None:
    from tests.test_serve_deploy import dashboard_metrics

    exposed = httpx.get(f"http://127.0.0.1:{launched.port}/metrics", timeout=30).text
    names = {line.split("{")[0].split(" ")[0] for line in exposed.splitlines() if line.startswith("vllm:")}
    missing = sorted(m for m in dashboard_metrics() if m not in names)
    assert not missing, f"dashboard queries metrics this vLLM does not export: {missing}"


def test_ctrl_c_stops_vllm_and_frees_the_port(launched: Launched) -> None:
    launched.process.send_signal(signal.SIGINT)
    assert launched.process.wait(timeout=90) == 130
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in launched.vllm_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in launched.vllm_pids if _alive(pid)]
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", launched.port))
