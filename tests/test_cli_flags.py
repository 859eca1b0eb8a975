"""One meaning per flag across every CLI (common.flags), the README's table of them, deprecated
spellings that still work with a warning, and tracing that starts only when asked."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.flags import FLAGS, _DeprecatedStore, flags_table, wandb_wanted

ROOT = Path(__file__).resolve().parents[1]

# Every CLI: module -> the function that builds its parser.
CLIS = {
    "envs.__main__": "_parser",
    "rollouts.generate": "build_parser",
    "rollouts.questions": "build_parser",
    "rollouts.export": "build_parser",
    "judges.score": "build_parser",
    "judges.metrics": "build_parser",
    "train.eval": "build_parser",
    "train.bfcl": "build_parser",
    "train.grpo": "build_parser",
    "train.sft": "build_parser",
    "train.merge": "_parser",
    "train.models": "_parser",
    "serve.vllm": "_parser",
    "serve.bench": "_parser",
    "serve.export": "_parser",
    "serve.lora": "_parser",
}
# CLIs with long work show progress, and each can turn it off.
WITH_PROGRESS = {
    "rollouts.generate",
    "rollouts.questions",
    "judges.score",
    "train.eval",
    "train.bfcl",
    "train.grpo",
    "train.sft",
    "train.merge",
    "train.models fetch",
    "serve.bench",
}
# CLIs that call a policy endpoint name the variable its key is in.
WITH_API_KEY_ENV = {"rollouts.generate", "rollouts.questions", "train.eval", "train.bfcl", "serve.bench"}


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for module, factory in CLIS.items():
        parser = getattr(importlib.import_module(module), factory)()
        yield module, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{module} {name}", sub


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_shared_flag_has_its_one_meaning() -> None:
    """A shared flag added by hand (an `--out` that is a folder, a `--json PATH`) fails here."""
    wrong = []
    for name, parser in parsers():
        for option, action in options(parser).items():
            if option in FLAGS and not isinstance(action, _DeprecatedStore):
                if getattr(action, "shared_flag", None) != option:
                    wrong.append(f"{name} {option}")
    assert not wrong, f"add these with common.flags.add_flag: {wrong}"


def test_progress_and_key_flags_are_everywhere_they_belong() -> None:
    found = dict(parsers())
    assert [n for n in WITH_PROGRESS if "--no-progress" not in options(found[n])] == []
    assert [n for n in WITH_API_KEY_ENV if "--api-key-env" not in options(found[n])] == []


def test_each_cli_names_itself() -> None:
    for module in CLIS:
        parser = getattr(importlib.import_module(module), CLIS[module])()
        assert parser.prog == f"python -m {module.removesuffix('.__main__')}", module


def test_the_readme_table_is_the_vocabulary() -> None:
    assert flags_table() in (ROOT / "README.md").read_text()


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_an_old_spelling_still_works_with_one_warning(tmp_path: Path) -> None:
    """`judges.metrics --json PATH` (now `--report`) writes where it did, after a warning line."""
    traj = {
        "id": "e:t:s0",
        "env": "e",
        "task_id": "t",
        "task": {"id": "t", "question": "q"},
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "reward": 1.0,
    }
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps(traj) + "\n")
    old = run("-m", "judges.metrics", str(src), "--json", str(tmp_path / "old.json"), cwd=ROOT)
    assert old.returncode == 0, old.stderr
    assert "warning: --json is deprecated; use --report" in old.stderr
    assert json.loads((tmp_path / "old.json").read_text())
    new = run("-m", "judges.metrics", str(src), "--report", str(tmp_path / "new.json"), cwd=ROOT)
    assert new.returncode == 0 and "deprecated" not in new.stderr
    assert json.loads((tmp_path / "new.json").read_text()) == json.loads((tmp_path / "old.json").read_text())


def test_a_deprecated_switch_sets_the_new_one() -> None:
    from train.merge import _parser

    args = _parser().parse_args(["--adapter", "a", "--out", "o", "--quiet"])
    assert args.no_progress is True and str(args.out_dir) == "o"


def test_wandb_and_weave_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from rollouts.tracing import wanted_project

    key = {"WANDB_API_KEY": "k"}
    assert not wandb_wanted(False, key) and wandb_wanted(True, key) and wandb_wanted(False, {"MCPGYM_WANDB": "1"})
    assert wanted_project(None, environ=key) is None
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    from train.art_adapter import make_model

    quiet = make_model("m", "p", "base", wandb=False)
    # ART would report to W&B with the key set (report_metrics None) and LocalBackend starts a run itself.
    assert quiet.report_metrics == [] and quiet._get_wandb_run() is None
    loud = make_model("m", "p", "base", wandb=True)
    assert loud.report_metrics == ["wandb"] and "_get_wandb_run" not in vars(loud)
