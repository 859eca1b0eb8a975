"""Python objects named by a reference, the way config files and flags name a function:

- `pkg.module:function`: a module on the import path (or, with `base_dir`, in that folder:
  a config file's folder, tried before the import path);
- `path/to/file.py:function`: a Python file, relative to `base_dir` (else the working folder).

`function` may be dotted (`module:Class.method`). A reference that does not resolve is a
ValueError of one line (the caller turns it into its own bad-input error), never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def is_file_ref(target: str) -> bool:
    """Whether the part before ':' names a file rather than a module."""
    return target.endswith(".py") or "/" in target or "\\" in target


def load_ref(ref: str, *, base_dir: Path | None = None, what: str = "reference") -> Any:
    """The object `ref` names. `what` starts every error line ("verifier", "judge", ...)."""
    target, _, attr = ref.strip().rpartition(":")
    if not target or not attr:
        raise ValueError(f"{what} '{ref}': expected 'package.module:function' or 'path/to/file.py:function'")
    module = _load_file(target, base_dir, ref, what) if is_file_ref(target) else _import(target, base_dir, ref, what)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what} '{ref}': {target} has no attribute '{attr}'") from None
    return obj


def _load_file(target: str, base_dir: Path | None, ref: str, what: str) -> Any:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"{what} '{ref}': no such file {path}")
    # One module per file, however often it is named: its state (a loaded model, a cache) is shared.
    name = f"_mcpgym_ref_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{what} '{ref}': {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look a module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ValueError(f"{what} '{ref}': {path} failed to load: {type(exc).__name__}: {exc}") from None
    return module


def _import(target: str, base_dir: Path | None, ref: str, what: str) -> Any:
    if base_dir is not None:
        top = target.split(".", 1)[0]
        if (base_dir / f"{top}.py").is_file() or (base_dir / top).is_dir():
            # The module sits beside the config: its folder joins the import path for good, so the
            # module's own imports of its siblings work later too.
            folder = str(base_dir.resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        where = f" (looked in {base_dir} and the import path)" if base_dir is not None else ""
        missing = f"no module '{exc.name}'" if exc.name else str(exc)
        raise ValueError(f"{what} '{ref}': cannot import '{target}': {missing}{where}") from None
    except Exception as exc:
        raise ValueError(f"{what} '{ref}': importing '{target}' failed: {type(exc).__name__}: {exc}") from None
