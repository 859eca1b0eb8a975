"""The GPU install resolves to a working set: the gpu + dev extras under constraints/gpu.txt, for
the GPU box (CPython 3.11, glibc 2.35 x86_64), resolved by uv against the package index from
metadata alone (nothing is downloaded or installed), wheels only. Skips only when uv or the index
is missing."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints" / "gpu.txt"
CPU_LOCK = ROOT / "constraints" / "cpu.txt"
# The same target as scripts/lock_gpu.sh.
TARGET = ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_35")
MARKER_ENV = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": "3.11",
    "python_full_version": "3.11.11",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
INDEX = "https://pypi.org/simple/openpipe-art/"


def pins(text: str) -> dict[str, str]:
    """`name==version` lines as {canonical name: version}."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s;#]+)", line.strip())
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def uv_bin() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


@pytest.fixture(scope="module")
def resolved() -> dict[str, str]:
    uv = uv_bin()
    if uv is None:
        pytest.skip("uv is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    try:
        httpx.head(INDEX, timeout=10, follow_redirects=True).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"package index unreachable ({INDEX}: {exc.__class__.__name__})")
    command = [uv, "pip", "compile", "pyproject.toml", "--extra", "gpu", "--extra", "dev", *TARGET]
    # --no-build: wheels only, as the GPU box (and an offline `pip download --only-binary`) gets them.
    command += ["--constraint", str(LOCK), "--no-build", "--no-header", "--no-annotate", "--quiet", "--no-config"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the gpu extra does not resolve under {LOCK.name}:\n{done.stderr[-3000:]}"
    return pins(done.stdout)


def test_the_lock_is_what_resolves(resolved: dict[str, str]) -> None:
    """Every package the gpu extra needs is pinned in the lock, at the version that resolves: an
    extra changed without rerunning scripts/lock_gpu.sh fails here."""
    locked = pins(LOCK.read_text())
    unpinned = sorted(set(resolved) - set(locked))
    assert not unpinned, f"not in {LOCK.name} (rerun scripts/lock_gpu.sh): {unpinned}"
    moved = {name: (locked[name], version) for name, version in resolved.items() if locked[name] != version}
    assert not moved, f"resolved off the lock: {moved}"


def test_arts_backend_pins_hold(resolved: dict[str, str]) -> None:
    """openpipe-art's own `backend` extra (torch, transformers, unsloth, trl, peft, ...) is met
    exactly, read from ART's metadata, so the trainer stack is the one ART was released with."""
    art = resolved["openpipe-art"]
    assert art == "0.5.18"
    if importlib.metadata.version("openpipe-art") != art:
        pytest.skip(f"installed openpipe-art is not {art}: its metadata is not the locked one")
    unmet = []
    for line in importlib.metadata.requires("openpipe-art") or []:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({**MARKER_ENV, "extra": "backend"}):
            continue
        got = resolved.get(canonicalize_name(req.name))
        if got is None or not req.specifier.contains(got, prereleases=True):
            unmet.append(f"{req} (resolved {got})")
    assert not unmet, f"ART's backend pins not met: {unmet}"
    assert resolved["torch"] == "2.10.0"  # ART 0.5.18: torch==2.10.0 (not the CPU path's 2.13.0)


def test_no_stale_or_placeholder_versions(resolved: dict[str, str]) -> None:
    """The failures a loose extra produced: vLLM 0.1.2 (a 2023 release, the newest that fits
    ART's torch pin), and sdist placeholders (0.0.0a0) picked where no wheel fits the platform."""
    if "vllm" in resolved:
        assert Version(resolved["vllm"]) >= Version("0.10"), f"vllm {resolved['vllm']}"
    placeholders = {name: v for name, v in resolved.items() if Version(v) < Version("0.0.1")}
    assert not placeholders, f"placeholder releases (no wheel for the target): {placeholders}"
    for name in ("unsloth", "unsloth-zoo", "transformers", "peft", "trl", "uv"):
        assert name in resolved, f"{name} missing from the gpu install"
    assert Version(resolved["uv"]) >= Version("0.6.15")  # ART's vLLM runtime: required-version


def test_cpu_lock_pins_the_dev_tools_and_the_cpu_torch() -> None:
    """The CPU path (scripts/setup_venv.sh) installs the dev extra under constraints/cpu.txt: uv is
    pinned there too, and torch stays the CPU build's 2.13.0."""
    cpu = pins(CPU_LOCK.read_text())
    assert cpu["torch"] == "2.13.0"
    assert "uv" in cpu
