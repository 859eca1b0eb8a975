"""A private folder per episode, for servers whose state lives on disk.

A config names it `${MCPGYM_EPISODE_DIR}` in any string of a server entry (command, args, env,
cwd, url); the server's environment also carries it as `MCPGYM_EPISODE_DIR`. For each fresh server
(or session) mcpgym makes a new folder, mode 0700, before the server starts (a warm spare's folder
is made when the spare is started, and belongs to the episode that takes it), and removes it once
the server has stopped, unless `keep_episode_dirs` (or `MCPGYM_KEEP_EPISODE_DIRS=1`) keeps it for
debugging.

`workspace` (the `mcpgym` section, relative to the config file) seeds each folder with a copy of a
template folder. Copies, never hard links: a server that writes a file in place (SQLite, `r+`)
through a hard link would change the template and every other episode's view of it. Each file is
cloned with the FICLONE ioctl (a reflink: copy-on-write blocks, no data copied) where the filesystem
has it (btrfs, XFS, bcachefs), else copied with `copy_file_range` (in the kernel), in this process:
no `cp` per episode, and one pair of opens per file.

Under `shared` isolation there is one session for every episode, so one folder for the env's life.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .config import HttpServer, StdioServer
from .config_vars import EPISODE_DIR as PLACEHOLDER
from .config_vars import EPISODE_DIR_VAR

log = logging.getLogger(__name__)

KEEP_VAR = "MCPGYM_KEEP_EPISODE_DIRS"
ROOT_VAR = "MCPGYM_EPISODE_ROOT"  # where the folders are made (default: the temp folder); /dev/shm is fastest
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_PREFIX = "mcpgym-episode-"


def uses_placeholder(target: Any) -> bool:
    """Whether a stdio or HTTP server's entry names `${MCPGYM_EPISODE_DIR}` anywhere."""
    if isinstance(target, StdioServer):
        texts = [target.command, *target.args, *target.env.values(), target.cwd or ""]
    elif isinstance(target, HttpServer):
        texts = [target.url, *target.headers.values()]
    else:
        return False
    return any(PLACEHOLDER in text for text in texts)


def bind(target: StdioServer | HttpServer, folder: Path) -> StdioServer | HttpServer:
    """`target` with `${MCPGYM_EPISODE_DIR}` made `folder`, and (stdio) `MCPGYM_EPISODE_DIR` in its env."""
    path = str(folder)
    if isinstance(target, HttpServer):
        bound_http = target.model_copy(update={"url": target.url.replace(PLACEHOLDER, path)})
        bound_http._expanded = target._expanded
        return bound_http
    update = {
        "command": target.command.replace(PLACEHOLDER, path),
        "args": [arg.replace(PLACEHOLDER, path) for arg in target.args],
        "env": {k: v.replace(PLACEHOLDER, path) for k, v in target.env.items()} | {EPISODE_DIR_VAR: path},
        "cwd": target.cwd.replace(PLACEHOLDER, path) if target.cwd is not None else None,
    }
    bound = target.model_copy(update=update)
    bound._expanded = target._expanded
    return bound


class _Cloner:
    """Copies files for one template: a reflink (FICLONE) until the filesystem refuses one, then
    `copy_file_range` (which the kernel may still do without copying data), on one pair of open files."""

    def __init__(self) -> None:
        self.reflink = True

    def __call__(self, src: str, dst: str) -> str:
        with open(src, "rb") as source, open(dst, "wb") as dest:
            info = os.fstat(source.fileno())
            if not self._reflinked(source.fileno(), dest.fileno()):
                _copy_data(source.fileno(), dest.fileno(), info.st_size)
            os.fchmod(dest.fileno(), stat.S_IMODE(info.st_mode))
            os.utime(dest.fileno(), ns=(info.st_atime_ns, info.st_mtime_ns))
        return dst

    def _reflinked(self, source: int, dest: int) -> bool:
        if not self.reflink:
            return False
        try:
            fcntl.ioctl(dest, _FICLONE, source)
        except OSError:
            self.reflink = False  # this filesystem has none: not asked again for this copy
            return False
        return True


def _copy_data(source: int, dest: int, size: int) -> None:
    try:
        while size > 0:
            done = os.copy_file_range(source, dest, size)
            if done == 0:
                return
            size -= done
    except OSError:  # an old kernel, or two filesystems it will not copy between: read and write
        os.lseek(source, 0, os.SEEK_SET)
        os.lseek(dest, 0, os.SEEK_SET)
        os.ftruncate(dest, 0)
        while chunk := os.read(source, 1 << 20):
            os.write(dest, chunk)


def copy_tree(template: Path, folder: Path) -> None:
    """The template's contents into `folder` (which exists): files cloned, symlinks kept as links."""
    shutil.copytree(template, folder, symlinks=True, copy_function=_Cloner(), dirs_exist_ok=True)


def copy_path(source: Path, dest: Path) -> None:
    """A file or a folder, whole, to `dest` (which does not exist)."""
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, copy_function=_Cloner())
    else:
        _Cloner()(str(source), str(dest))


class EpisodeSpace(BaseModel):
    """What each episode's folder holds, and whether it outlives the episode."""

    model_config = ConfigDict(frozen=True)

    workspace: Path | None = None  # the template folder, resolved
    keep: bool = False

    def create(self) -> Path:
        """A new private folder (mode 0700, as `mkdtemp` makes it), seeded from the workspace."""
        folder = Path(tempfile.mkdtemp(prefix=_PREFIX, dir=os.environ.get(ROOT_VAR) or None))
        try:
            if self.workspace is not None:
                copy_tree(self.workspace, folder)
                os.chmod(folder, 0o700)  # copytree gives the folder the template's mode
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    def remove(self, folder: Path) -> None:
        if self.keep or os.environ.get(KEEP_VAR, "") not in ("", "0"):
            log.info("kept episode folder %s", folder)
            return
        with contextlib.suppress(FileNotFoundError):
            if sys.version_info >= (3, 12):
                shutil.rmtree(folder, onexc=_force)
            else:
                shutil.rmtree(folder, onerror=_force)


def _force(func: Any, path: str, _exc: Any) -> None:
    """A server may leave a read-only folder behind: make it writable and try once more."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)
