"""Test-suite wiring: every module in tests/fixtures/ is a pytest plugin, so each
package's fixtures (real servers, scripted policy servers, tiny models) live in
their own file and are shared across the suite."""

from __future__ import annotations

import pkgutil
from pathlib import Path

# `common` first: the other fixture modules import it, and pytest rewrites a plugin's asserts only
# when it is the first to import it.
pytest_plugins = sorted(
    (
        f"tests.fixtures.{info.name}"
        for info in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
        if not info.name.startswith("_")
    ),
    key=lambda name: (not name.endswith(".common"), name),
)
