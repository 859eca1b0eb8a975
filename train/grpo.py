"""`python -m train.grpo`: GRPO with OpenPipe ART on an env (the run: train.grpo_loop).

    python -m train.grpo --env energy                       # embedded model, CPU backend, all defaults
    python -m train.grpo --env energy --backend local --base-model Qwen/Qwen3-4B-Instruct-2507

The flags are the fields of `GRPOConfig` (train.grpo_config), grouped for `--help`; their help is
each field's description. Beyond what the config validates, a few flags are checked against each
other and the disk here, before anything starts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.cli import ArgumentParser, UsageError, run_cli
from common.config_flags import add_config_flags
from common.config_flags import config_from_args as fill_config
from common.flags import REPLAY_METAVAR
from train.backends.local import check_gpu_flags, gpu_ids
from train.grpo_config import GRPOConfig
from train.grpo_loop import EndpointDown, load_rubric, run_grpo

# --help's groups, each with its fields in the order shown (None: the top-level options).
FLAG_GROUPS: dict[str | None, list[str]] = {
    None: ["env", "replay"],
    "model": [
        "base_model",
        "backend",
        "trainer_gpus",
        "inference_gpus",
        "project",
        "name",
        "art_path",
        "runs_dir",
        "lora_rank",
        "max_model_len",
        "resume",
    ],
    "judge": ["judge", "judge_model", "judge_base_url", "judge_api_key_env", "rubric"],
    "GRPO": [
        "steps",
        "groups_per_step",
        "group_size",
        "signal",
        "min_spread",
        "accumulate",
        "guidance",
        "guidance_gamma",
        "lr",
        "kl",
        "max_turns",
        "max_tokens",
        "temperature",
        "concurrency",
        "seed",
    ],
    "warm start": [
        "warm_start",
        "warm_start_threshold",
        "probe_tasks",
        "teacher",
        "teacher_base_url",
        "teacher_model",
        "teacher_tasks",
        "sft_tasks",
        "sft_epochs",
        "sft_lr",
        "sft_batch_size",
        "sft_min_reward",
    ],
    "evaluation and logging": [
        "eval_every",
        "eval_tasks",
        "base_eval_tasks",
        "val_tasks",
        "skip_eval",
        "weave",
        "no_weave",
        "wandb",
        "no_progress",
    ],
}
# "0,1" -> [0, 1]; and the judge's URLs parsed as every CLI parses them (add_config_flags would
# make the str field a plain str).
ARG_TYPES = {"trainer_gpus": gpu_ids, "inference_gpus": gpu_ids}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m train.grpo",
        description="GRPO with ART on an env: warm start (SFT) when needed, the loop, before/after evaluation.",
    )
    for title, fields in FLAG_GROUPS.items():
        group = p if title is None else p.add_argument_group(title)
        add_config_flags(
            group,
            GRPOConfig,
            fields,
            types=ARG_TYPES,
            weave={"nargs": "?", "const": ""},
            replay={"metavar": REPLAY_METAVAR},
        )
    return p


def check_args(args: dict[str, Any]) -> None:
    """What the config alone cannot check: flags that need each other, files that must exist, a
    judge spec and rubric that parse, GPU flags that fit the backend. UsageError otherwise."""
    if args["teacher_base_url"] and not args["teacher_model"]:
        raise UsageError("--teacher-base-url needs --teacher-model")
    warm = args["warm_start"]
    if warm not in ("auto", "none") and not Path(warm).is_file():
        raise UsageError(f"--warm-start: {warm!r} is not auto, none or an existing trajectory file")
    from judges import parse_spec

    try:
        if args["judge"] is not None:  # None: the env's default, known once the env is loaded
            parse_spec(args["judge"])
    except ValueError as exc:
        raise UsageError(f"--judge: {exc}") from None
    load_rubric(args["rubric"])
    from envs.replay import replay_from_flag

    replay_from_flag(args["replay"])  # a bad --replay: one line before anything starts
    try:
        check_gpu_flags(args["backend"], args["trainer_gpus"], args["inference_gpus"])
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def config_from_args(argv: list[str] | None = None) -> GRPOConfig:
    args = vars(build_parser().parse_args(argv))
    check_args(args)
    return fill_config(GRPOConfig, args)


async def main(argv: list[str] | None = None) -> int:
    config = config_from_args(argv)
    try:
        summary = await run_grpo(config)
    except EndpointDown as exc:
        print(f"error: {exc}; state saved, continue with --resume --name {config.name}", file=sys.stderr)
        return 1
    if summary.stopped:
        print(f"stopped after step {summary.iterations}; continue with --resume --name {config.name}")
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    from train.backends.errors import BaseModelError
    from train.backends.local import BackendUnavailable

    return (BaseModelError, BackendUnavailable)


if __name__ == "__main__":
    run_cli(main, user_errors=_user_errors())
