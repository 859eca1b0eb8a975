"""Variables in `mcpServers` configs, expanded from the environment before validation.

Every host writes them its own way; all of these work in any string of a server entry
(command, args, env values, cwd, envFile, url, headers, auth):

- `${VAR}`, `${VAR:-default}` (Claude Code, fastmcp) and `${env:VAR}` (Cursor, VS Code):
  the environment variable; one not set, with no default, is a config error naming it.
- `${input:ID}` (VS Code `inputs`): mcpgym never prompts; the value is read from the
  environment variable named after the id, upper-cased with every other character than a
  letter or digit made `_` (`perplexity-key` -> `PERPLEXITY_KEY`), else the input's
  `default`, else a config error naming the variable to set.
- `${workspaceFolder}`, `${workspaceFolderBasename}`, `${userHome}`, `${pathSeparator}`,
  `${/}` (Cursor, VS Code): the workspace is the folder holding `.vscode/` or `.cursor/` when
  the config lives there, else the config file's own folder.

`${MCPGYM_EPISODE_DIR}` is not read from the environment: it is left as written, and each
episode's private folder is put in its place when the server starts (`envs.episode_dir`).

A message names the variable and where it is used, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts import EnvConfigError

_REF = re.compile(r"\$\{([^${}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Host-specific forms that need an editor (settings, commands): refused, never sent literally.
_UNSUPPORTED_PREFIXES = ("config", "command", "extension")
EPISODE_DIR_VAR = "MCPGYM_EPISODE_DIR"
EPISODE_DIR = "${" + EPISODE_DIR_VAR + "}"  # filled per episode, not from the environment


def input_env_name(input_id: str) -> str:
    """The environment variable that gives VS Code input `input_id` its value."""
    return re.sub(r"[^A-Za-z0-9]", "_", input_id).upper()


def workspace_folder(config_file: Path | None) -> Path:
    """Where `${workspaceFolder}` points for a config at `config_file`."""
    if config_file is None:
        return Path.cwd()
    folder = config_file.resolve().parent
    return folder.parent if folder.name in (".vscode", ".cursor") else folder


class Expander:
    """Expands one config's variables; `inputs` maps VS Code input ids to their defaults."""

    def __init__(self, *, config_file: Path | None = None, inputs: Mapping[str, str | None] | None = None) -> None:
        self.inputs = dict(inputs or {})
        self.substituted: list[str] = []  # every value read from the environment: maybe a secret
        workspace = workspace_folder(config_file)
        self.builtins = {
            "workspaceFolder": str(workspace),
            "workspaceFolderBasename": workspace.name,
            "userHome": str(Path.home()),
            "pathSeparator": os.sep,
            "/": os.sep,
        }

    def expand(self, text: str, *, where: str) -> str:
        return _REF.sub(lambda match: self._value(match, where), text)

    def expand_tree(self, value: Any, *, where: str) -> Any:
        """Every string inside `value` (dicts and lists walked; keys left as they are)."""
        if isinstance(value, str):
            return self.expand(value, where=where)
        if isinstance(value, dict):
            return {k: self.expand_tree(v, where=f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand_tree(v, where=f"{where}.{i}") for i, v in enumerate(value)]
        return value

    def _value(self, match: re.Match[str], where: str) -> str:
        body = match.group(1)
        if body in (EPISODE_DIR_VAR, f"env:{EPISODE_DIR_VAR}"):
            return EPISODE_DIR
        if body in self.builtins:
            return self.builtins[body]
        prefix, colon, rest = body.partition(":")
        if colon and prefix == "env":
            return self._env(rest, match.group(0), where)
        if colon and prefix == "input":
            return self._input(rest, where)
        if colon and prefix in _UNSUPPORTED_PREFIXES:
            raise EnvConfigError(f"{where} uses {match.group(0)}; only environment variables and inputs are read")
        if _NAME.fullmatch(prefix):
            return self._env(body, match.group(0), where)
        return match.group(0)  # not a variable (a literal "${" in an argument): left as written

    def _env(self, spec: str, ref: str, where: str) -> str:
        name, sep, default = spec.partition(":-")
        if not _NAME.fullmatch(name):
            raise EnvConfigError(f"{where}: {ref} is not a variable name")
        value = os.environ.get(name)
        if value is not None:
            self.substituted.append(value)
            return value
        if sep:
            return default
        raise EnvConfigError(f"{where} references ${{{name}}}, which is not set in the environment")

    def _input(self, input_id: str, where: str) -> str:
        if input_id not in self.inputs:
            raise EnvConfigError(f"{where} references ${{input:{input_id}}}, which 'inputs' does not declare")
        name = input_env_name(input_id)
        value = os.environ.get(name)
        if value is not None:
            self.substituted.append(value)
            return value
        default = self.inputs[input_id]
        if default is not None:
            return default
        raise EnvConfigError(f"{where} uses ${{input:{input_id}}}: set {name} in the environment (never prompted)")


def expand_vars(text: str, *, where: str) -> str:
    """Expand the variables of one string from the environment (no inputs, workspace = cwd)."""
    return Expander().expand(text, where=where)
