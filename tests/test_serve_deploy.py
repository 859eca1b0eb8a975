"""deploy/ checked offline (no container engine or cluster here): every file parses, the compose file
passes the Compose Specification schema, the Kubernetes manifests pass the Kubernetes OpenAPI
schemas, the vLLM flags they use are accepted by the installed vLLM's own argument parser, the
pieces point at each other (ports, labels, paths, datasource uid), and every metric the Grafana
dashboard queries is one vLLM defines. tests/test_serve_vllm.py checks the same metric names
against a live server's /metrics."""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vllm.json"
K8S_VERSION = "1.33.0"
# What `python -m serve.vllm` always passes for a tool-calling policy, and the key guard on every
# route; deployments must keep them (and serve the merged model: no --enable-lora).
REQUIRED_FLAGS = {"--enable-auto-tool-choice", "--tool-call-parser", "--return-tokens-as-token-ids", "--middleware"}
GUARD = "vllm_guard.KeyGuard"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in _yaml_docs(path)]


def _kind(kind: str) -> dict[str, Any]:
    return next(doc for doc in _k8s_docs() if doc["kind"] == kind)


def dashboard_metrics() -> set[str]:
    """Every `vllm:` series the dashboard's queries and variables read, as written (with suffixes)."""
    text = DASHBOARD.read_text(encoding="utf-8")
    return set(re.findall(r"vllm:[a-z0-9_:]+", text))


@cache
def vllm_defined_metrics() -> set[str]:
    """Metric names registered in the installed vllm package's source (`name="vllm:..."`)."""
    import vllm

    root = Path(vllm.__file__).parent
    names: set[str] = set()
    for source in root.rglob("*.py"):
        names.update(re.findall(r"""name=\s*["'](vllm:[a-z0-9_:]+)["']""", source.read_text(encoding="utf-8")))
    return names


def _base_name(series: str) -> str:
    for suffix in _SUFFIXES:
        if series.endswith(suffix):
            return series[: -len(suffix)]
    return series


@pytest.mark.parametrize("path", sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"}))
def test_every_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    else:
        assert _yaml_docs(path), f"{path} is empty"


def test_compose_file_matches_the_compose_spec() -> None:
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    compose = _yaml_docs(DEPLOY / "compose.yaml")[0]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors
    # The schema accepts any string; these are the references that must line up.
    services = compose["services"]
    assert set(services) == {"vllm", "prometheus", "grafana"}
    for volume in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), f"compose mounts missing {source}"
    assert (DEPLOY / services["vllm"]["build"]["dockerfile"]).is_file()


def test_prometheus_scrapes_the_vllm_service() -> None:
    config = _yaml_docs(DEPLOY / "prometheus" / "prometheus.yml")[0]
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["vllm:8000"]
    compose = _yaml_docs(DEPLOY / "compose.yaml")[0]
    [published] = compose["services"]["vllm"]["ports"]
    assert published.endswith(":8000:8000")


def test_grafana_provisioning_points_at_the_dashboard() -> None:
    datasource = _yaml_docs(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")[0]
    provider = _yaml_docs(DEPLOY / "grafana" / "provisioning" / "dashboards" / "mcpgym.yaml")[0]
    compose = _yaml_docs(DEPLOY / "compose.yaml")[0]
    [source] = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090"
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel["targets"]}
    assert uids == {source["uid"]}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_dashboard_queries_only_metrics_vllm_defines() -> None:
    used = dashboard_metrics()
    assert len(used) >= 10
    unknown = sorted(m for m in used if _base_name(m) not in vllm_defined_metrics())
    assert not unknown, f"not defined by the installed vllm: {unknown}"


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    checked = []
    for doc in _k8s_docs():
        if doc["apiVersion"].startswith(("monitoring.coreos.com/", "kustomize.config.k8s.io/")):
            continue  # CRDs: no schema ships offline; checked by hand below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked.append(doc["kind"])
    assert sorted(checked) == ["Deployment", "Namespace", "PersistentVolumeClaim", "Service"]


def test_kubernetes_pieces_point_at_each_other() -> None:
    deployment, service, monitor = _kind("Deployment"), _kind("Service"), _kind("ServiceMonitor")
    kustomization = _yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")[0]
    assert all((DEPLOY / "k8s" / name).is_file() for name in kustomization["resources"])
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [container] = pod["spec"]["containers"]
    port_names = {port["name"] for port in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {_kind("PersistentVolumeClaim")["metadata"]["name"]}
    # The guard vLLM loads (--middleware vllm_guard.KeyGuard) is the generated ConfigMap, mounted on PYTHONPATH.
    [generator] = kustomization["configMapGenerator"]
    assert "vllm_guard.py" in generator["files"]
    assert all((DEPLOY / "k8s" / name).is_file() for name in generator["files"])
    [guard] = [v for v in pod["spec"]["volumes"] if "configMap" in v]
    assert guard["configMap"]["name"] == generator["name"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == guard["name"]]
    env = {item["name"]: item for item in container["env"]}
    assert env["PYTHONPATH"]["value"] == mount["mountPath"]


def _k8s_vllm_argv() -> list[str]:
    container = _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vllm", "serve"]
    model, *flags = container["args"]
    return ["--model", model, *flags]


def _docker_vllm_argv() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    [entry] = [line for line in text.splitlines() if line.startswith("ENTRYPOINT ")]
    shell = json.loads(entry.removeprefix("ENTRYPOINT "))[2]
    words = shlex.split(shell.replace('"$@"', ""))
    env = dict(re.findall(r"(\w+)=(\S+)", text.split("ENV ", 1)[1].split("\n\n")[0]))
    words = [re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), w) for w in words]
    assert words[:3] == ["exec", "vllm", "serve"]
    return ["--model", *words[3:]]


def test_deployments_pass_the_flags_serve_vllm_passes_and_vllm_accepts_them() -> None:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    for argv in (_k8s_vllm_argv(), _docker_vllm_argv()):
        assert REQUIRED_FLAGS <= {flag.split("=")[0] for flag in argv}, argv
        args = parser.parse_args(argv)  # an unknown flag or bad value exits here
        validate_parsed_serve_args(args)
        assert args.tool_call_parser == "hermes" and args.return_tokens_as_token_ids
        assert not args.enable_lora and args.middleware == [GUARD]  # the merged model, behind the key
        assert args.port == 8000 and args.host == "0.0.0.0"  # inside the container; published on loopback
