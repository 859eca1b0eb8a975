"""CLI flags built from the pydantic config they fill, so a CLI never restates its config.

    add_config_flags(group, GRPOConfig, ["steps", "lr", "signal"], types={"trainer_gpus": gpu_ids})
    config = config_from_args(GRPOConfig, vars(parser.parse_args(argv)))

Each field becomes `--field-name` with the field's default, its `description` as help, choices
from a `Literal`, `store_true` for a bool that defaults to False, and the type of its annotation
(int, float, str, Path). A field that is a shared flag (`common.flags.FLAGS`) goes through
`add_flag`, so it means the same in every CLI. `config_from_args` turns a validation error into one
`--flag: message` line (a `UsageError`: exit code 2).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .cli import UsageError
from .flags import FLAG_TYPES, FLAGS, add_flag

M = TypeVar("M", bound=BaseModel)
_SCALARS: tuple[type, ...] = (int, float, str, Path)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argument(name: str, info: FieldInfo, default: Any) -> dict[str, Any]:
    """add_argument keywords for one field, from its annotation and default."""
    annotation = _unwrap_optional(info.annotation)
    kwargs: dict[str, Any] = {"default": default}
    if info.description:
        kwargs["help"] = info.description
    if annotation is bool:
        if default is not False:
            raise TypeError(f"{name}: a bool flag must default to False (store_true)")
        kwargs["action"] = "store_true"
    elif typing.get_origin(annotation) is Literal:
        kwargs["choices"] = list(typing.get_args(annotation))
    elif annotation in _SCALARS:
        kwargs["type"] = annotation
    else:
        raise TypeError(f"{name}: no flag type for {annotation!r}; pass one in `types`")
    return kwargs


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    fields: Iterable[str],
    *,
    types: dict[str, Callable[[str], Any]] | None = None,
    help: dict[str, str] | None = None,
    **extra: dict[str, Any],
) -> None:
    """Add one flag per field of `model`. `types` gives a parser where the annotation has none
    (`list[int]` from "0,1"), `help` a text where the field has no description or this CLI says
    it better, and `extra[field]` more add_argument keywords (nargs, const, metavar)."""
    defaults = model.model_construct()  # the field defaults, also for a model with required fields
    for name in fields:
        info = model.model_fields[name]
        if name in (types or {}):
            kwargs: dict[str, Any] = {"default": getattr(defaults, name), "type": types[name]}  # type: ignore[index]
            if info.description:
                kwargs["help"] = info.description
        else:
            kwargs = _argument(name, info, getattr(defaults, name))
        if name in (help or {}):
            kwargs["help"] = help[name]  # type: ignore[index]
        kwargs.update(extra.get(name, {}))
        flag = flag_name(name)
        if flag in FLAGS:
            kwargs.setdefault("help", FLAGS[flag][1])
            if flag in FLAG_TYPES and name not in (types or {}):  # the shared flag's own parser (URL checks)
                kwargs.pop("type", None)
            if FLAGS[flag][0] is None:  # a shared switch: add_flag makes it store_true
                kwargs.pop("action", None)
            add_flag(parser, flag, **kwargs)
        else:
            kwargs.setdefault("help", "")
            parser.add_argument(flag, **kwargs)


def config_from_args(model: type[M], args: dict[str, Any]) -> M:
    """`model(**args)` for the keys that are its fields; a validation error is one flag's line."""
    values = {key: value for key, value in args.items() if key in model.model_fields}
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = flag_name("-".join(str(part) for part in error["loc"]))
        raise UsageError(f"{field}: {error['msg']}") from None
