"""One meaning per flag: the flags mcpgym's CLIs share, each added through `add_flag` so that it
means the same thing (and reads the same in `--help`) in every CLI. The README's "Flags" table is
`FLAGS`; `tests/test_cli_flags.py` walks every CLI's parser and fails on a shared flag added by hand.

An old spelling stays for one release as a hidden alias that still works and prints one
`warning: --old is deprecated; use --new` line (`aliases=`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .redact import redact_url

# flag -> (metavar, what it means everywhere). `None` metavar: a switch.
FLAGS: dict[str, tuple[str | None, str]] = {
    "--base-url": (
        "URL[,URL...]",
        "the policy's OpenAI-compatible endpoint; several comma-separated: replicas of one model "
        "(least-loaded first, a failing one left out for a cool-down)",
    ),
    "--judge-base-url": (
        "URL[,URL...]",
        "the judge's OpenAI-compatible endpoint; several comma-separated: replicas of one judge model",
    ),
    "--model": ("NAME", "the model name to request at --base-url (the name the server serves it under)"),
    "--name": ("NAME", "the name a model trained or served here is given"),
    "--weights": ("PATH", "weights to load: a model folder or a Hugging Face repo id"),
    "--base-model": ("PATH", "the base weights a LoRA is trained on or applied to"),
    "--out": ("FILE", "an output file"),
    "--out-dir": ("DIR", "an output folder"),
    "--limit": ("N", "how many tasks: the first N (0 or absent: all)"),
    "--tasks-file": ("FILE", "a tasks JSONL file"),
    "--report": ("FILE", "where the JSON report (stats, metrics, summary) is written"),
    "--json": (None, "print JSON on stdout instead of a table"),
    "--no-progress": (None, "no progress bars (or set TQDM_DISABLE=1)"),
    "--api-key-env": ("VAR", "the environment variable holding the policy endpoint's API key"),
    "--judge-api-key-env": ("VAR", "the environment variable holding the judge endpoint's API key"),
    "--weave": ("PROJECT", "trace to this weave project (or set MCPGYM_WEAVE=PROJECT); off otherwise"),
    "--wandb": (None, "log training metrics to W&B (or set MCPGYM_WANDB=1); off otherwise"),
    "--backend": ("NAME", "ART's training backend: torch (CPU), local, megatron, serverless or tinker (docs/gpu.md)"),
    "--trainer-gpus": ("IDS", "the GPUs ART trains on, comma-separated from 0 (local backend, with --inference-gpus)"),
    "--inference-gpus": ("ID", "the GPU ART's vLLM serves from (local backend, with --trainer-gpus)"),
}


def parse_base_urls(value: str) -> list[str]:
    """The URLs of a `--base-url` value: one, or several comma-separated (replicas of one model).
    Raises ValueError with one line for an empty list, a non-http(s) URL or a repeated one (the
    value redacted: the line goes to a terminal or a CI log)."""
    urls = [part.strip() for part in value.split(",")]
    if not value.strip() or any(not url for url in urls):
        raise ValueError(f"--base-url {redact_url(value)!r}: an empty URL (give URL or URL,URL,...)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--base-url: {redact_url(url)!r} is not an http(s) URL")
    seen = [url.rstrip("/") for url in urls]
    if len(set(seen)) != len(seen):
        raise ValueError(f"--base-url {redact_url(value)!r}: a URL is given twice")
    return urls


def base_url_arg(value: str) -> str:
    """argparse `type=` of `--base-url`: the value checked and normalised (`a,b` without spaces)."""
    try:
        return ",".join(parse_base_urls(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def single_base_url_arg(value: str) -> str:
    """`--base-url` where one endpoint is meant (a benchmark of one server)."""
    url = base_url_arg(value)
    if "," in url:
        raise argparse.ArgumentTypeError(f"{value!r}: one URL here (this measures one endpoint)")
    return url


# Flags whose values every CLI parses the same way (add_flag sets `type=`).
FLAG_TYPES: dict[str, Any] = {"--base-url": base_url_arg, "--judge-base-url": base_url_arg}


class _DeprecatedStore(argparse.Action):
    """A hidden old spelling: stores like the new flag would, after one warning line."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, const_value: Any = None, **kwargs: Any):
        self.new, self.const_value = new, const_value
        if const_value is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None):
        print(f"warning: {option} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const_value if self.const_value is not None else values)


def add_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    *,
    help: str,
    aliases: Sequence[str] = (),
    **kwargs: Any,
) -> argparse.Action:
    """Add shared `flag` with this CLI's `help` (what it is here: "trajectory JSONL (appended)"),
    and the hidden deprecated `aliases`. Other keyword arguments go to `add_argument`."""
    if flag not in FLAGS:
        raise KeyError(f"{flag} is not a shared flag (common.flags.FLAGS)")
    metavar, _meaning = FLAGS[flag]
    if flag in FLAG_TYPES:
        kwargs.setdefault("type", FLAG_TYPES[flag])
    # argparse counts a required flag as given only when its own spelling is used, so with aliases
    # the check moves to common.cli.ArgumentParser.parse_known_args (`required_flag`).
    required = bool(kwargs.pop("required", False)) if aliases else False
    if metavar is None:
        kwargs.setdefault("action", "store_true")
    else:
        kwargs.setdefault("metavar", metavar)
    action = parser.add_argument(flag, help=f"{help} (required)" if required else help, **kwargs)
    action.shared_flag = flag  # type: ignore[attr-defined]  (what tests/test_cli_flags.py checks)
    action.required_flag = required  # type: ignore[attr-defined]
    for old in aliases:
        extra: dict[str, Any] = {}
        if metavar is None:
            extra["const_value"] = True
        elif "type" in kwargs:
            extra["type"] = kwargs["type"]
        if "nargs" in kwargs and metavar is not None:
            extra["nargs"] = kwargs["nargs"]
        parser.add_argument(
            old,
            dest=action.dest,
            action=_DeprecatedStore,
            new=flag,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **extra,
        )
    return action


def add_policy_endpoint(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--base-url` (one URL or replicas), `--model` and `--api-key-env` with the defaults of the
    CLIs that call a policy server they do not start (rollouts.generate, rollouts.questions,
    train.bfcl)."""
    add_flag(
        parser,
        "--base-url",
        default="http://localhost:8000/v1",
        help="OpenAI-compatible server (URL,URL,...: replicas)",
    )
    add_flag(parser, "--model", default="Qwen3-8B", help="model name on that server")
    add_flag(parser, "--api-key-env", default="OPENAI_API_KEY", help="variable holding the server's API key")


REPLAY_METAVAR = "MODE[:PATH]"
REPLAY_HELP = (
    "record and replay of tool results (envs.replay): record | replay | auto | off, with the SQLite "
    "store at PATH (default: the config's mcpgym.replay.path, else tools.sqlite)"
)


def add_replay_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> argparse.Action:
    """`--replay MODE[:PATH]`, the same in every CLI that runs an env (rollouts.generate, train.eval,
    train.grpo); `envs.replay.replay_from_flag` reads its value. One flag rather than a mode flag and a
    path flag: the path is optional (the config names one) and means nothing without a mode."""
    return parser.add_argument("--replay", default=None, metavar=REPLAY_METAVAR, help=REPLAY_HELP)


def add_out_with_old_positional(parser: argparse.ArgumentParser, *, help: str) -> None:
    """`--out FILE`, for CLIs that took OUT as a second positional argument (still read, with a
    warning, for one release); `out_from(args)` gives the one to use."""
    add_flag(parser, "--out", default=None, help=f"{help} (required)")
    parser.add_argument("old_out", nargs="?", default=None, help=argparse.SUPPRESS)


def out_from(args: argparse.Namespace) -> str:
    """The output file of a CLI set up with `add_out_with_old_positional` (UsageError when none)."""
    from .cli import UsageError

    if args.old_out is not None:
        if args.out is not None:
            raise UsageError("OUT given twice: as --out and as a second positional argument")
        print("warning: OUT as a positional argument is deprecated; use --out OUT", file=sys.stderr)
        return str(args.old_out)
    if args.out is None:
        raise UsageError("--out is required: the file to write")
    return str(args.out)


def progress_off() -> bool:
    """Whether progress bars are off for this process (`--no-progress` or TQDM_DISABLE)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


def apply_no_progress(no_progress: bool) -> None:
    """`--no-progress`: off for this process and the processes it starts (tqdm reads TQDM_DISABLE)."""
    if no_progress:
        os.environ["TQDM_DISABLE"] = "1"


def wandb_wanted(flag: bool, environ: dict[str, str] | None = None) -> bool:
    """W&B only when asked: `--wandb` or MCPGYM_WANDB=1 (never from WANDB_API_KEY alone)."""
    environ = dict(os.environ) if environ is None else environ
    return flag or environ.get("MCPGYM_WANDB", "").strip().lower() in ("1", "true", "yes", "on")


def flags_table() -> str:
    """The README's table of shared flags (markdown)."""
    rows = ["| flag | means, in every CLI |", "|---|---|"]
    rows += [
        f"| `{flag}{'' if metavar is None else ' ' + metavar}` | {meaning} |"
        for flag, (metavar, meaning) in FLAGS.items()
    ]
    return "\n".join(rows)
