"""Test-suite wiring: every module in tests/fixtures/ is a pytest plugin, so each
package's fixtures (real servers, scripted policy servers, tiny models) live in
their own file and are shared across the suite."""

from __future__ import annotations

import pkgutil
from pathlib import Path

pytest_plugins = [
    f"tests.fixtures.{info.name}"
    for info in pkgutil.iter_modules([str(Path(__file__).parent / "fixtures")])
    if not info.name.startswith("_")
]
