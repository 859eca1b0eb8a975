"""Files safe against a hostile neighbour (issue 27, finding 4) and readers that stream (finding 7).

Each test is an attack by someone who can write the output's folder (a shared /tmp, a group
folder): a link planted where mcpgym writes a lock, a temp file or the output itself must never
change the file it points to; outputs and locks are created owner-only; and a resume or an export
of a large trajectory file holds a line at a time, not the file. The runs are real: the energy env
in-process, a real OpenAI client against the scripted policy server over HTTP, real files.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.cli import UsageError
from common.files import FILE_MODE_ENV, UnsafePath, file_mode, write_private_atomic
from contracts import TrajectoryError
from rollouts import ChatPolicy, PolicyConfig, run_rollouts
from rollouts.export import export_file
from rollouts.jsonl import iter_jsonl, read_jsonl, write_jsonl
from rollouts.lock import lock_path
from rollouts.resume import resume_records
from tests.fixtures.judge_data import PRICE, make_trajectory
from tests.fixtures.policy_server import ScriptedServer
from train.bfcl import write_json_atomic
from train.evaluation import write_reports
from train.loop_state import LoopState

ROOT = Path(__file__).resolve().parents[1]
PRECIOUS = b'{"id": "precious", "note": "a file of ours the attacker wants changed"}\n'


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most users have (022): without mcpgym's own modes, files would be world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of ours outside the output folder, readable by others (0644), that must stay as it is."""
    path = tmp_path / "elsewhere" / "victim.jsonl"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    path.chmod(0o644)
    return path


def assert_untouched(victim: Path) -> None:
    assert victim.read_bytes() == PRECIOUS
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def run_into(env: Any, server: ScriptedServer, out: Path, n: int = 2, **options: Any) -> Any:
    async with ChatPolicy(PolicyConfig(base_url=server.base_url, model="scripted")) as policy:
        return await run_rollouts(env, policy, env.tasks("train")[:n], out=out, progress=False, **options)


# -- the lock ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
async def test_a_planted_lock_link_never_reaches_its_target(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, victim: Path, dangling: bool
) -> None:
    """Old code: the lock was opened O_CREAT without O_NOFOLLOW and truncated: the victim became
    the run's pid (or, dangling, a new file appeared where the link pointed)."""
    out = tmp_path / "runs" / "traj.jsonl"
    out.parent.mkdir()
    target = victim.with_name("not-yet.jsonl") if dangling else victim
    lock_path(out).symlink_to(target)
    with pytest.raises(UnsafePath, match="symbolic link") as refused:
        await run_into(energy_env, scripted_server, out)
    assert "\n" not in str(refused.value)
    assert_untouched(victim)
    assert not victim.with_name("not-yet.jsonl").exists()
    assert not out.exists() and scripted_server.requests == []  # refused before any work


async def test_a_hard_linked_lock_is_refused(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, victim: Path
) -> None:
    """A second name for a file of ours is no lock of ours either: old code truncated it too."""
    out = tmp_path / "traj.jsonl"
    os.link(victim, lock_path(out))
    with pytest.raises(UnsafePath, match="hard-linked"):
        await run_into(energy_env, scripted_server, out)
    assert_untouched(victim)


def test_the_cli_refuses_a_planted_lock_link_in_one_line(
    scripted_server: ScriptedServer, tmp_path: Path, victim: Path
) -> None:
    out = tmp_path / "traj.jsonl"
    lock_path(out).symlink_to(victim)
    proc = subprocess.run(
        [sys.executable, "-m", "rollouts.generate", "--env", "energy", "--limit", "1", "--no-progress",
         "--base-url", scripted_server.base_url, "--model", "scripted", "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "symbolic link" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_untouched(victim)


# -- the output itself and the temp names -----------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
async def test_a_link_planted_at_the_output_is_refused(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, victim: Path, dangling: bool
) -> None:
    """Old code followed it: a dangling link made the run create and fill the file it names (and a
    link to a file of ours was resumed from, through the link)."""
    out = tmp_path / "traj.jsonl"
    target = victim.with_name("not-yet.jsonl") if dangling else victim
    out.symlink_to(target)
    with pytest.raises(UnsafePath, match="symbolic link"):
        await run_into(energy_env, scripted_server, out)
    assert_untouched(victim)
    assert not victim.with_name("not-yet.jsonl").exists()
    assert out.is_symlink() and scripted_server.requests == []


async def test_a_link_at_the_compaction_temp_name_is_not_followed(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, victim: Path
) -> None:
    """A resume that compacts (here: an infra failure to run again) used to write the kept records
    into the fixed `<out>.compact.tmp`, through a link planted there, and rename the link onto
    `out`: the victim held the run's records and `out` pointed at it."""
    out = tmp_path / "traj.jsonl"
    task = energy_env.tasks("train")[0]
    failed = make_trajectory(PRICE, [], error=TrajectoryError(kind="infra", message="env: died"))
    failed = failed.model_copy(update={"id": f"energy:{task.id}:s0", "env": "energy", "task_id": task.id})
    write_jsonl(out, [failed])
    planted = out.with_name(out.name + ".compact.tmp")
    planted.symlink_to(victim)
    result = await run_into(energy_env, scripted_server, out, n=1)
    assert result.retried == 1 and result.trajectories[0].success
    assert_untouched(victim)
    assert not out.is_symlink() and [r["id"] for r in read_jsonl(out)] == [f"energy:{task.id}:s0"]
    assert planted.is_symlink()  # left alone, and not used


def _export(path: Path) -> None:
    src = path.with_name("src.jsonl")
    write_jsonl(src, [make_trajectory(PRICE, [], answer="4.12")])
    export_file(src, path, fmt="openai")


def _dataset_info(path: Path) -> None:
    src = path.with_name("src.jsonl")
    write_jsonl(src, [make_trajectory(PRICE, [], answer="4.12")])
    export_file(src, path.with_name("sft.jsonl"), fmt="llamafactory")


# Every writer that used a fixed `<path>.tmp` before renaming onto `path`: (what it writes, how).
TEMP_NAME_WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "write_jsonl (exports, GRPO's scored steps)": ("out.jsonl", lambda p: write_jsonl(p, [{"id": "a"}])),
    "export_file": ("out.jsonl", _export),
    "llamafactory dataset_info.json": ("dataset_info.json", _dataset_info),
    "train.eval reports": ("eval.json", lambda p: write_reports([], p)),
    "GRPO state.json": ("state.json", lambda p: LoopState().save(p)),
    "train.bfcl summary": ("bfcl.summary.json", lambda p: write_json_atomic(p, {"accuracy": 1.0})),
}


@pytest.mark.parametrize("writer", sorted(TEMP_NAME_WRITERS))
def test_a_link_at_an_old_temp_name_is_not_followed(tmp_path: Path, victim: Path, writer: str) -> None:
    name, write = TEMP_NAME_WRITERS[writer]
    path = tmp_path / name
    planted = path.with_name(path.name + ".tmp")
    planted.symlink_to(victim)
    write(path)
    assert_untouched(victim)
    assert path.is_file() and not path.is_symlink() and mode_of(path) == 0o600
    assert planted.is_symlink()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_a_report_written_where_a_link_was_planted_replaces_the_link(tmp_path: Path, victim: Path) -> None:
    """Reports, stats and metrics were `write_text` to their path: a link planted at
    `<in>.metrics.json` sent the metrics into the victim."""
    src = tmp_path / "traj.jsonl"
    write_jsonl(src, [make_trajectory(PRICE, [], answer="4.12")])
    report = src.with_suffix(".metrics.json")
    report.symlink_to(victim)
    proc = subprocess.run(
        [sys.executable, "-m", "judges.metrics", str(src)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_untouched(victim)
    assert not report.is_symlink() and "param_f1" in json.loads(report.read_text()) and mode_of(report) == 0o600


# -- modes ------------------------------------------------------------------------------------


async def test_outputs_and_locks_are_owner_only(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    out = tmp_path / "traj.jsonl"
    lock_modes: list[int] = []
    result = await run_into(
        energy_env, scripted_server, out, on_trajectory=lambda _t: lock_modes.append(mode_of(lock_path(out)))
    )
    assert len(result.trajectories) == 2 and lock_modes == [0o600, 0o600]
    assert mode_of(out) == 0o600
    export = export_file(out, tmp_path / "sft.jsonl", fmt="llamafactory")
    assert export.written == 2
    assert mode_of(tmp_path / "sft.jsonl") == 0o600 and mode_of(tmp_path / "dataset_info.json") == 0o600
    # A resume that compacts rewrites the file: still owner-only.
    with out.open("ab") as fh:
        fh.write(b'{"id": "torn')
    assert resume_records(out).compacted and mode_of(out) == 0o600


async def test_the_mode_variable_widens_files_exactly(
    energy_env: Any, scripted_server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MCPGYM_FILE_MODE is the user's explicit choice: applied as given, even under umask 077."""
    monkeypatch.setenv(FILE_MODE_ENV, "0644")
    os.umask(0o077)
    out = tmp_path / "traj.jsonl"
    lock_modes: list[int] = []
    await run_into(
        energy_env, scripted_server, out, on_trajectory=lambda _t: lock_modes.append(mode_of(lock_path(out)))
    )
    assert mode_of(out) == 0o644 and lock_modes == [0o644, 0o644]
    export_file(out, tmp_path / "chat.jsonl", fmt="openai")
    assert mode_of(tmp_path / "chat.jsonl") == 0o644
    LoopState().save(tmp_path / "state.json")
    assert mode_of(tmp_path / "state.json") == 0o644


@pytest.mark.parametrize("value", ["644x", "0755", "0444", "8"])
def test_a_bad_mode_variable_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    """A mode with execute bits, without owner write, or not octal is bad input, not a crash."""
    monkeypatch.setenv(FILE_MODE_ENV, value)
    with pytest.raises(UsageError, match=FILE_MODE_ENV) as bad:
        write_private_atomic(tmp_path / "x.json", "{}")
    assert "\n" not in str(bad.value)
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(FILE_MODE_ENV, "0640")
    assert file_mode() == 0o640


# -- streaming --------------------------------------------------------------------------------

FILE_BYTES = 50 * 1024 * 1024
LINE_BYTES = 25 * 1024


def _peak_bytes(work: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        value = work()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _large_file(path: Path, make: Callable[[int], dict[str, Any]]) -> int:
    """Fill `path` with `make(i)` records up to ~50 MB; returns how many."""
    count = written = 0
    with path.open("wb") as fh:
        while written < FILE_BYTES:
            line = json.dumps(make(count)).encode() + b"\n"
            fh.write(line)
            written += len(line)
            count += 1
    return count


def test_resume_over_a_large_file_streams(tmp_path: Path) -> None:
    """Old code read the whole file, then held every record: hundreds of MB for a 50 MB file."""
    out = tmp_path / "traj.jsonl"
    pad = "x" * LINE_BYTES

    def record(i: int) -> dict[str, Any]:
        error = {"kind": "infra", "message": "down"} if i % 10 == 0 else None
        return {"id": f"r{i % 1500}", "pad": pad, "error": error}  # ids repeat: compaction keeps the last

    count = _large_file(out, record)
    with out.open("ab") as fh:
        fh.write(b'{"id": "torn", "pad": "')  # a crash mid-write: the half line must not break the reader
    assert out.stat().st_size > FILE_BYTES

    resumed, peak = _peak_bytes(lambda: resume_records(out))
    assert peak < FILE_BYTES / 10, f"resume held {peak / 1e6:.1f} MB of a {FILE_BYTES / 1e6:.0f} MB file"
    last = {f"r{i % 1500}": i for i in range(count)}
    infra = {ident for ident, i in last.items() if i % 10 == 0}
    assert resumed.compacted and resumed.duplicates == count - 1500
    assert resumed.retry_ids == infra and resumed.done_ids == set(last) - infra
    # The compacted file: exactly the kept records, the last of each id, in file order, whole lines.
    assert out.read_bytes().endswith(b"\n")
    ids, peak = _peak_bytes(lambda: [r["id"] for r in iter_jsonl(out)])
    assert peak < FILE_BYTES / 10
    assert ids == [ident for ident, _ in sorted(last.items(), key=lambda kv: kv[1]) if ident not in infra]


def test_an_export_of_a_large_file_streams(tmp_path: Path) -> None:
    src = tmp_path / "traj.jsonl"
    base = json.loads(make_trajectory(PRICE, [], answer="4.12 " + "y" * LINE_BYTES).model_dump_json())

    def record(i: int) -> dict[str, Any]:
        return base | {"id": f"energy:price:s{i}", "sample": i}

    count = _large_file(src, record)
    result, peak = _peak_bytes(lambda: export_file(src, tmp_path / "trl.jsonl", fmt="trl"))
    assert result.read == result.written == count
    assert peak < FILE_BYTES / 10, f"export held {peak / 1e6:.1f} MB of a {FILE_BYTES / 1e6:.0f} MB file"
    # Streaming keeps the old promise: a bad line, even the last, writes nothing (the temp file goes).
    before = os.stat(tmp_path / "trl.jsonl")
    with src.open("ab") as fh:
        fh.write(b'{"question": "not a trajectory"}\n')
    with pytest.raises(ValueError, match=f"record {count + 1} is not a trajectory"):
        export_file(src, tmp_path / "trl.jsonl", fmt="trl")
    after = os.stat(tmp_path / "trl.jsonl")
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traj.jsonl", "trl.jsonl"]


# -- scripts/check_exports.sh -----------------------------------------------------------------


def _check_exports(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run scripts/check_exports.sh with a BASE_PYTHON that runs the script's inline checks (python
    reading stdin) and refuses everything else (making a venv: exit 3), so the script stops right
    after its folder check and never installs anything."""
    fake = tmp_path / "base-python"
    fake.write_text(f'#!/bin/sh\n[ "$1" = "-" ] && exec {sys.executable} "$@"\necho "no venvs here" >&2\nexit 3\n')
    fake.chmod(0o700)
    base = {k: v for k, v in os.environ.items() if k not in ("CHECK_DIR", "MCPGYM_HOME")}
    base |= {"BASE_PYTHON": str(fake), "HOME": str(tmp_path / "home")}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_exports.sh")],
        capture_output=True, text=True, timeout=60, check=False, env=base | env,
    )  # fmt: skip


@pytest.mark.parametrize("planted", ["link", "group-writable", "default-link"])
def test_check_exports_refuses_a_venv_folder_it_did_not_make(tmp_path: Path, planted: str) -> None:
    """The venvs under CHECK_DIR are executed: a fixed /tmp path (the old default) or a folder
    someone else made or can write would run their code. Old code went on to make venvs in it."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    if planted == "group-writable":
        check_dir = tmp_path / "shared"
        check_dir.mkdir()
        check_dir.chmod(0o775)
    elif planted == "link":
        check_dir = tmp_path / "check"
        check_dir.symlink_to(theirs)
    else:  # the default folder, under the cache home, planted as a link
        check_dir = tmp_path / "home" / ".cache" / "mcpgym" / "check-exports"
        check_dir.parent.mkdir(parents=True)
        check_dir.symlink_to(theirs)
    proc = _check_exports(tmp_path, **({} if planted == "default-link" else {"CHECK_DIR": str(check_dir)}))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to run venvs" in proc.stderr and "installing" not in proc.stderr
    assert not list(theirs.iterdir())


def test_check_exports_makes_its_default_folder_owner_only(tmp_path: Path) -> None:
    proc = _check_exports(tmp_path, MCPGYM_HOME=str(tmp_path / "cache"))
    assert proc.returncode == 3 and "installing into" in proc.stderr, proc.stderr  # past the check
    assert mode_of(tmp_path / "cache" / "check-exports") == 0o700
