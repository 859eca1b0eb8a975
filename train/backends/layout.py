"""Where ART keeps a model's files: `{art_path}/{project}/models/{name}/checkpoints/{step:04d}/`.

The one place mcpgym spells ART's folder layout (openpipe-art 0.5.18: `art.utils.output_dirs`
`get_model_dir`, `get_step_checkpoint_dir`, and `art.utils.get_model_step.get_step_from_dir`,
which counts digit-named checkpoint folders). Plain pathlib, no `art` import: `train.merge` and
the CLIs' argument checks use it without paying for ART's import. `tests/test_train_art_adapter.py`
checks it against ART's own functions, so an ART upgrade that moves the folders fails there.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINTS = "checkpoints"


def model_dir(art_path: str | Path, project: str, name: str) -> Path:
    """ART's folder of one model (`model.json`, `checkpoints/`, `history.jsonl`, ...)."""
    return Path(art_path) / project / "models" / name


def checkpoints_dir(model_folder: str | Path) -> Path:
    """The folder holding a model's `NNNN` step folders."""
    return Path(model_folder) / CHECKPOINTS


def checkpoint_dir(model_folder: str | Path, step: int) -> Path:
    """The checkpoint (a PEFT adapter folder) of `step`: `checkpoints/0003` for step 3."""
    return checkpoints_dir(model_folder) / f"{step:04d}"


def checkpoint_folders(model_folder: str | Path) -> list[Path]:
    """The step folders of a model, oldest first (ART's rule: digit-named folders; a
    `.tmp-0003-...` folder of a save in progress is not one)."""
    folder = checkpoints_dir(model_folder)
    if not folder.is_dir():
        return []
    return sorted(
        (child for child in folder.iterdir() if child.name.isdigit() and child.is_dir()),
        key=lambda child: int(child.name),
    )


def checkpoint_steps(model_folder: str | Path) -> list[int]:
    """The steps that have a checkpoint folder, oldest first."""
    return [int(child.name) for child in checkpoint_folders(model_folder)]
