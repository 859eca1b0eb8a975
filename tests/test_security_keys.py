"""Servers answer only to who started them, and a key goes only where it was meant to (issue 27).

Each test is an attack that must fail:

- a local user reads the key of a vLLM server mcpgym started from its command line, or loads an
  adapter over `agent@N` through a route vLLM's own key check leaves open (`/adapters`,
  `/invocations`), or through runtime LoRA loading on a server that serves a merged model;
- a judge, a vLLM admin client or a benchmark pointed at a host other than OpenAI's is handed the
  user's `OPENAI_API_KEY` because its own key variable is unset;
- a key crosses the network in plain http without a word (or with a warning per request);
- deploy/ publishes on every interface, lets Grafana in anonymously, loads adapters at runtime or
  serves without a key;
- a bundled MCP server (`python -m envs.energy.server --transport http`) listens beyond loopback.

A real vLLM start takes minutes, so the starter is checked by the exact argv and environment it
builds (and vLLM's own parser reading that argv), and the key by real HTTP servers on loopback:
vLLM's own app (routes, middleware stack) built in-process, and recording stand-ins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fixtures.common import ThreadedServer, free_port
from tests.fixtures.judge_data import PRICE, make_trajectory
from tests.fixtures.judge_server import JudgeServer

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
OPENAI_SECRET = "sk-openai-" + "x" * 32  # what must never leave for a foreign host

# litellm's response objects trip pydantic's serializer check on every call (its logging thread): noise.
pytestmark = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")


def fake_model(folder: Path) -> Path:
    """The files VLLMServer, serving_profile and the torch backend's check read (no real weights)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    added = {"0": {"content": "<|im_start|>"}, "1": {"content": "<|im_end|>"}}
    (folder / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    return folder


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The user's OpenAI key is in the environment; every other key variable is unset."""
    for name in ("VLLM_API_KEY", "JUDGE_API_KEY", "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_SECRET)
    return monkeypatch


# --------------------------------------------------------------------------- (a) what the starter builds


def test_the_key_is_in_the_servers_environment_never_on_its_command_line(tmp_path: Path, no_keys) -> None:
    """/proc/<pid>/cmdline is world-readable: a key there is a key for every local user."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from serve.vllm_config import VLLMConfig
    from serve.vllm_server import VLLMServer

    config = VLLMConfig(model=fake_model(tmp_path / "m"), device="cpu", enable_lora=True, runtime_lora=True)
    server, other = VLLMServer(config), VLLMServer(config)
    argv, env = server.command(), server.environment()
    assert len(server.api_key) >= 32 and server.api_key != other.api_key  # random, one per server
    assert server.api_key not in " ".join(argv)
    assert env["VLLM_API_KEY"] == server.api_key
    assert "--api-key" not in argv
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv[3:])  # vLLM's own reading of it
    assert args.api_key is None
    assert args.middleware == ["serve.vllm_guard.KeyGuard"]  # the key on every route (see below)
    assert server.key_supplied is False
    assert server.client()._headers == {"Authorization": f"Bearer {server.api_key}"}


def test_runtime_lora_loading_only_where_mcpgym_loads_checkpoints(tmp_path: Path, no_keys) -> None:
    """A plain `serve.vllm` of a merged model has no adapter-loading route to poison, even when
    the user's shell exports VLLM_ALLOW_RUNTIME_LORA_UPDATING; training and eval turn it on."""
    import serve.vllm as cli
    from train.backends.settings import TorchBackendSettings
    from train.backends.torch_service import TorchService
    from train.eval_models import Served

    no_keys.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
    model = fake_model(tmp_path / "merged")
    lora = adapter(tmp_path / "adapter")

    def built(*flags: str) -> Any:
        args = cli._parser().parse_args(["--weights", str(model), "--device", "cpu", "--dry-run", *flags])
        server, _loras, _family = cli.build_server(args)
        return server

    plain = built("--lora", f"mine={lora}")
    assert plain.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "False"
    argv = plain.command()
    assert argv[argv.index("--lora-modules") + 1] == f"mine={lora.resolve()}"  # served from the start instead
    assert built("--no-lora").environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "False"
    assert built("--runtime-lora").environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"  # asked for

    from serve.vllm_server import VLLMServer

    service = TorchService(
        model_name="agent", base_model=str(model), output_dir=str(tmp_path / "out"), settings=TorchBackendSettings()
    )
    training = VLLMServer(service.server_config())
    assert training.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert training.key_supplied is False and training.api_key not in " ".join(training.command())
    evaluation = VLLMServer(Served(max_model_len=1024, base_model=None).server_config(model))
    assert evaluation.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert evaluation.api_key != training.api_key


def test_serve_vllm_takes_the_users_key_and_never_prints_one(tmp_path: Path, no_keys) -> None:
    """The user's own key (VLLM_API_KEY) still works; the dry run and a piped announcement show no key."""
    import serve.vllm as cli

    model = fake_model(tmp_path / "merged")
    users = "user-chosen-" + secrets.token_urlsafe(16)
    no_keys.setenv("VLLM_API_KEY", users)
    args = cli._parser().parse_args(["--weights", str(model), "--device", "cpu", "--no-lora", "--dry-run"])
    server, _, _ = cli.build_server(args)
    assert server.api_key == users and server.key_supplied
    assert cli.key_line(server, terminal=True) == "key: $VLLM_API_KEY (clients: --api-key-env VLLM_API_KEY)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    dry = subprocess.run(
        [sys.executable, "-m", "serve.vllm", "--weights", str(model), "--device", "cpu", "--no-lora", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert users not in dry.stdout + dry.stderr
    assert "VLLM_API_KEY='<hidden>'" in dry.stdout.splitlines()
    no_keys.delenv("VLLM_API_KEY")
    server, _, _ = cli.build_server(args)
    assert not server.key_supplied
    assert server.api_key not in cli.key_line(server, terminal=False)  # a log file never gets it
    assert f"export VLLM_API_KEY={server.api_key}" in cli.key_line(server, terminal=True)
    assert server.api_key not in cli.example_curl(server, "m")  # the curl reads $VLLM_API_KEY


# --------------------------------------------------------------------------- (b) real HTTP


@contextlib.contextmanager
def served_over_http(app: Any) -> Iterator[int]:
    """`app` served by uvicorn on loopback, without its lifespan (vLLM's would start an engine)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error"))
    thread = threading.Thread(target=server.run, name="vllm-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_vllms_own_app_answers_no_route_but_health_and_metrics_without_the_key(no_keys) -> None:
    """vLLM's own VLLM_API_KEY check guards /v1... only: with runtime LoRA on, `POST /adapters`
    (SageMaker's route to the same loader) and `/invocations` (chat) reach their handlers keyless.
    The app mcpgym starts (vLLM's real app and middleware stack, built in-process here, served over
    HTTP) loads serve.vllm_guard and refuses them."""
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    key = secrets.token_urlsafe(32)
    no_keys.setenv("VLLM_API_KEY", key)
    no_keys.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")  # the training server's setting
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--middleware", "serve.vllm_guard.KeyGuard"])
    app = build_app(args, supported_tasks=("generate",))
    routes = {getattr(route, "path", "") for route in app.routes}
    assert {"/adapters", "/invocations", "/v1/load_lora_adapter"} <= routes  # the doors exist

    attack = {"name": "agent@1", "src": "/tmp/poisoned", "lora_name": "agent@1", "lora_path": "/tmp/poisoned"}
    with served_over_http(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for method, path in [
            ("POST", "/adapters"),
            ("POST", "/invocations"),
            ("POST", "/v1/load_lora_adapter"),
            ("POST", "/v1/unload_lora_adapter"),
            ("POST", "/v1/chat/completions"),
            ("GET", "/v1/models"),
            ("POST", "/tokenize"),
            ("POST", "/scale_elastic_ep"),
            ("POST", "/health"),  # only GET is open
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"}):
                response = client.request(method, path, json=attack, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
        # What Prometheus reads stays open (GET /health too: the stand-in below, which has a handler for it).
        assert client.get("/metrics").status_code == 200
        # With the key the request reaches vLLM's handler (no engine here: not a 401, that is all).
        reached = client.post("/adapters", json=attack, headers={"Authorization": f"Bearer {key}"})
        assert reached.status_code != 401


def test_the_guard_refuses_to_serve_without_a_key(no_keys) -> None:
    from serve.vllm_guard import KeyGuard

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached
        raise AssertionError("served without a key")

    with pytest.raises(RuntimeError, match="VLLM_API_KEY is not set"):
        KeyGuard(app)


class RecordingVLLM(ThreadedServer):
    """A stand-in for vLLM's runtime API (models, adapters, chat) behind the real KeyGuard,
    keeping every Authorization header it sees."""

    thread_name = "recording-vllm"

    def __init__(self, port: int, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
        from serve.vllm_guard import KeyGuard

        self.port = port
        self.auth: list[str] = []
        self.loaded: list[str] = []
        routes = [
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/load_lora_adapter", self._load, methods=["POST"]),
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/health", lambda request: JSONResponse({}), methods=["GET"]),
        ]
        with monkeypatch.context() as scope:
            scope.setenv("VLLM_API_KEY", key)
            guard = KeyGuard(Starlette(routes=routes))

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope["headers"])
                self.auth.append(headers.get(b"authorization", b"").decode())
            await guard(scope, receive, send)

        self.app = recorded

    async def _models(self, request: Request) -> JSONResponse:
        data = [{"id": "agent", "parent": None}] + [{"id": name, "parent": "agent"} for name in self.loaded]
        return JSONResponse({"object": "list", "data": data})

    async def _load(self, request: Request) -> JSONResponse:
        self.loaded.append((await request.json())["lora_name"])
        return JSONResponse("ok")

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        message = {"role": "assistant", "content": "hello"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        return JSONResponse(
            {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice]}
            | {"usage": usage}
        )


async def serve_lora_list(base_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "serve.lora", "--base-url", base_url, "list"]
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return await asyncio.to_thread(
        subprocess.run, argv, cwd=REPO, env=environ, capture_output=True, text=True, timeout=120
    )


async def test_mcpgym_reaches_its_server_with_its_key_and_a_neighbour_cannot(tmp_path: Path, no_keys) -> None:
    """mcpgym's own clients (the server's runtime API, ChatPolicy) carry the server's key; a local
    neighbour, or serve.lora run without the key (which used to send $OPENAI_API_KEY), gets 401 and
    cannot load an adapter over agent@N."""
    from rollouts import ChatPolicy, PolicyConfig
    from serve.vllm_client import VLLMClient, VLLMError
    from serve.vllm_config import VLLMConfig
    from serve.vllm_server import VLLMServer

    port = free_port()
    config = VLLMConfig(model=fake_model(tmp_path / "m"), device="cpu", port=port, enable_lora=True, runtime_lora=True)
    server = VLLMServer(config)
    with RecordingVLLM(port, server.api_key, no_keys) as stand_in:
        await server.load_lora("agent@1", adapter(tmp_path / "step1"))
        assert await server.list_models() == ["agent", "agent@1"]
        policy = ChatPolicy(PolicyConfig(base_url=server.base_url, model="agent@1"), api_key=server.api_key)
        async with policy:
            turn = await policy.act([{"role": "user", "content": "hi"}], [])
        assert turn.content == "hello"
        assert set(stand_in.auth) == {f"Bearer {server.api_key}"}

        stand_in.auth.clear()
        async with httpx.AsyncClient(timeout=10) as neighbour:
            attempt = await neighbour.post(
                f"{server.root_url}/v1/load_lora_adapter",
                json={"lora_name": "agent@1", "lora_path": "/tmp/poisoned", "load_inplace": True},
            )
            health = await neighbour.get(f"{server.root_url}/health")  # what start-up polls, keyless
        assert attempt.status_code == 401 and health.status_code == 200
        with pytest.raises(VLLMError, match=r"\(401\).*set VLLM_API_KEY"):
            await VLLMClient(server.base_url).load("agent@1", adapter(tmp_path / "poisoned"), replace=True)
        lora = await serve_lora_list(server.base_url)
        assert lora.returncode == 2 and "set VLLM_API_KEY" in lora.stderr
        assert stand_in.loaded == ["agent@1"]  # the poisoned load never happened
        assert not any(OPENAI_SECRET in header for header in stand_in.auth)
        # The user's own key for a server they started, by the variable serve.lora reads.
        users = await serve_lora_list(server.base_url, VLLM_API_KEY=server.api_key)
        assert users.returncode == 0 and "agent@1" in users.stdout, users.stderr


@pytest.fixture
def judge() -> Iterator[JudgeServer]:
    with JudgeServer() as server:
        yield server


async def test_a_judge_elsewhere_never_gets_the_openai_key(judge: JudgeServer, no_keys) -> None:
    """JUDGE_API_KEY unset: the LLM judge (openai SDK) and RULER (litellm) used to send
    $OPENAI_API_KEY to whatever --judge-base-url named."""
    from judges.endpoint import JudgeEndpoint
    from judges.llm_judge import LLMJudge
    from judges.ruler import RulerJudge

    group = [make_trajectory(PRICE, [], answer=answer, sample=i, group="g") for i, answer in enumerate(["a", "b"])]
    endpoint = JudgeEndpoint(model="Qwen/Qwen3-8B", base_url=judge.base_url)
    for make in (LLMJudge, RulerJudge):
        scorer = make(endpoint, backoff_s=0.0)
        try:
            scored = await scorer.score_group([t.model_copy(deep=True) for t in group])
        finally:
            await scorer.aclose()
        assert all(t.reward is not None for t in scored), make
    assert judge.auth_headers and not any(OPENAI_SECRET in header for header in judge.auth_headers)
    assert set(judge.auth_headers) == {"Bearer EMPTY"}

    # The judge's own variable goes to the judge.
    judge_key = "judge-" + secrets.token_urlsafe(16)
    no_keys.setenv("JUDGE_API_KEY", judge_key)
    judge.set_script()
    scorer = LLMJudge(endpoint, backoff_s=0.0)
    try:
        await scorer.score_group([t.model_copy(deep=True) for t in group])
    finally:
        await scorer.aclose()
    assert set(judge.auth_headers) == {f"Bearer {judge_key}"}

    # OPENAI_API_KEY stands in only for OpenAI's own API; a hosted judge's provider reads its own variable.
    no_keys.delenv("JUDGE_API_KEY")
    assert JudgeEndpoint(model="gpt-4.1-mini", base_url="https://api.openai.com/v1").api_key() == OPENAI_SECRET
    assert "api_key" not in JudgeEndpoint(model="anthropic/claude-sonnet-4").litellm_params()
    assert JudgeEndpoint(model="m", base_url="https://api.openai.com.evil.example/v1").api_key() is None


async def test_the_vllm_admin_client_and_bench_send_no_openai_key_elsewhere(no_keys) -> None:
    from serve.bench import BenchConfig, first_model, http_client
    from serve.vllm_client import VLLMClient

    assert VLLMClient("http://10.0.0.5:8000/v1")._headers == {}
    assert VLLMClient("https://api.openai.com/v1")._headers == {"Authorization": f"Bearer {OPENAI_SECRET}"}
    seen: list[str] = []

    async def models(request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse({"data": [{"id": "policy"}]})

    class Models(ThreadedServer):
        def __init__(self) -> None:
            self.app, self.port = Starlette(routes=[Route("/v1/models", models)]), free_port()

    with Models() as server:
        assert await first_model(server.base_url, "VLLM_API_KEY") == "policy"
        async with http_client(BenchConfig(base_url=server.base_url, model="m", api_key_env="VLLM_API_KEY")) as client:
            await client.get("/models")
    assert seen == ["", ""]


# --------------------------------------------------------------------------- (c) plain http


WARN_SCRIPT = """
import asyncio
from judges.endpoint import JudgeEndpoint
from rollouts import ChatPolicy, PolicyConfig
from serve.vllm_client import VLLMClient

async def main():
    for _ in range(3):  # three policies on the same replicas, each with its own clients
        policy = ChatPolicy(PolicyConfig(base_url="http://192.0.2.10:8000/v1,http://192.0.2.11:8000/v1",
                                         api_key_env="POLICY_KEY"))
        for replica in policy.pool.replicas:
            assert replica.client.api_key
        policy.for_rollout("t", 1).pool
        await policy.aclose()
    endpoint = JudgeEndpoint(model="m", base_url="http://192.0.2.10:8000/v1", api_key_env="POLICY_KEY")
    for _ in range(5):  # litellm's parameters are made per request
        endpoint.litellm_params()
    VLLMClient("http://192.0.2.10:8000/v1", api_key_env="POLICY_KEY")
    for url in ("https://192.0.2.12/v1", "http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8/v1"):
        ChatPolicy(PolicyConfig(base_url=url, api_key_env="POLICY_KEY")).pool
    ChatPolicy(PolicyConfig(base_url="http://192.0.2.13:8000/v1", api_key_env="UNSET_KEY")).pool  # no key: nothing
    print("done")

asyncio.run(main())
"""


def test_a_key_over_plain_http_off_this_machine_is_one_warning_per_endpoint(tmp_path: Path) -> None:
    secret = "policy-" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "UNSET_KEY")}
    env |= {"POLICY_KEY": secret, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    result = subprocess.run(
        [sys.executable, "-c", WARN_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert sorted(warnings) == [
        f"warning: the key in $POLICY_KEY is sent to http://192.0.2.{n}:8000 over plain http (readable on the "
        "network); use https or a loopback address"
        for n in (10, 11)
    ], result.stderr
    assert secret not in result.stderr


# --------------------------------------------------------------------------- (d) deploy/


def _interpolate_defaults(text: str) -> str:
    """Compose's `${VAR:-default}` as it reads with VAR unset."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: m.group(2), text)


def _compose() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_publishes_nothing_beyond_loopback_by_default() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            published = _interpolate_defaults(str(port))
            host, _, rest = published.rpartition(":")
            host = host.rpartition(":")[0] if host.count(":") else ""  # HOST:PUBLISHED:TARGET
            assert host == "127.0.0.1", f"{name} publishes {port} on every interface"
            assert "0.0.0.0" not in published and rest


def test_grafana_lets_no_one_in_anonymously() -> None:
    grafana = _compose()["services"]["grafana"]["environment"]
    assert str(grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    for path in (DEPLOY / "grafana").rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8").lower()
            assert "anonymous" not in text or "enabled: false" in text, path


def _settings(path: Path) -> str:
    """A deploy file without its comments (a comment may name what the file does not set)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join(line.split(" # ")[0] for line in lines if not line.lstrip().startswith("#"))


def test_deploy_loads_no_adapters_at_runtime() -> None:
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.name != "README.md":
            text = _settings(path)
            assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in text, path
            assert "--enable-lora" not in text and "--max-lora-rank" not in text, path


def test_deploy_serves_only_with_a_key_from_a_secret() -> None:
    import yaml

    vllm = _compose()["services"]["vllm"]["environment"]
    assert re.fullmatch(r"\$\{VLLM_API_KEY:\?[^}]+\}", vllm["VLLM_API_KEY"])  # compose refuses to start without it
    deployment = next(
        doc
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / "deployment.yaml").read_text(encoding="utf-8"))
        if doc and doc["kind"] == "Deployment"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [key] = [item for item in container["env"] if item["name"] == "VLLM_API_KEY"]
    assert "value" not in key and key["valueFrom"]["secretKeyRef"].get("optional", False) is False
    assert "--middleware=vllm_guard.KeyGuard" in container["args"]
    assert "--middleware vllm_guard.KeyGuard" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    # The guard deploy/ loads is mcpgym's, byte for byte.
    assert (DEPLOY / "k8s" / "vllm_guard.py").read_bytes() == (REPO / "serve" / "vllm_guard.py").read_bytes()
    for path in DEPLOY.rglob("*"):  # no key committed anywhere
        if path.is_file() and path.suffix in {".yaml", ".yml", ".json", ""}:
            assert not re.search(r"VLLM_API_KEY[=:]\s*['\"]?[A-Za-z0-9_-]{16,}", path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- MCP servers


def _listening(port: int) -> set[str]:
    """The local addresses of sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_a_bundled_mcp_server_over_http_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "envs.energy.server", "--transport", "http", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the MCP server did not start"
            time.sleep(0.2)
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
    finally:
        process.terminate()
        process.wait(timeout=30)
