"""Flags built from a pydantic config: types, defaults, choices, help, shared flags, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from common.cli import ArgumentParser, UsageError
from common.config_flags import add_config_flags, config_from_args


def gpu_ids(value: str) -> list[int]:
    return [int(part) for part in value.split(",")]


class Config(BaseModel):
    steps: int = Field(6, ge=0, description="GRPO steps")
    lr: float = Field(5e-5, gt=0)
    signal: Literal["reward", "success"] = Field("reward", description="spread a group needs")
    out: Path | None = Field(None, description="where it goes")
    resume: bool = False
    wandb: bool = Field(False, description="log to W&B")
    gpus: list[int] | None = None
    judge_base_url: str | None = None


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="t")
    add_config_flags(
        p,
        Config,
        ["steps", "lr", "signal", "out", "resume", "wandb", "gpus", "judge_base_url"],
        types={"gpus": gpu_ids},
    )
    return p


def test_flags_fill_the_config_with_its_types_and_defaults() -> None:
    assert config_from_args(Config, vars(parser().parse_args([]))) == Config()
    args = "--steps 3 --lr 0.1 --signal success --out x.json --resume --wandb --gpus 0,1".split()
    config = config_from_args(Config, vars(parser().parse_args(args)))
    assert config == Config(steps=3, lr=0.1, signal="success", out=Path("x.json"), resume=True, wandb=True, gpus=[0, 1])


def test_help_comes_from_the_field_and_shared_flags_from_the_table() -> None:
    p = parser()
    actions = {action.dest: action for action in p._actions}
    assert actions["steps"].help == "GRPO steps" and actions["signal"].choices == ["reward", "success"]
    assert getattr(actions["wandb"], "shared_flag", None) == "--wandb"  # through common.flags.add_flag
    assert getattr(actions["steps"], "shared_flag", None) is None


def test_bad_values_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["--signal", "nope"])
    assert exc.value.code == 2
    with pytest.raises(UsageError, match=r"^--steps: Input should be greater than or equal to 0$"):
        config_from_args(Config, vars(parser().parse_args(["--steps", "-1"])))


def test_a_field_without_a_flag_type_is_refused_when_the_parser_is_built() -> None:
    with pytest.raises(TypeError, match="gpus"):
        add_config_flags(ArgumentParser(prog="t"), Config, ["gpus"])


def test_a_shared_flag_keeps_its_own_parser() -> None:
    with pytest.raises(SystemExit):  # common.flags checks a URL; a plain str type would not
        parser().parse_args(["--judge-base-url", "not a url"])
    args = parser().parse_args(["--judge-base-url", "http://127.0.0.1:9/v1"])
    assert config_from_args(Config, vars(args)).judge_base_url == "http://127.0.0.1:9/v1"
