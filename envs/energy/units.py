"""Natural-gas energy units: conversion factors and the CO2 factor.

Everything converts through MMBtu. A cubic foot of pipeline-quality gas carries
1,037 Btu (the EIA's US average heat content), so volume units (Mcf, MMcf, Bcf,
m3) convert to energy with that factor.
"""

from __future__ import annotations

from typing import Literal

Unit = Literal["MMBtu", "therm", "kWh", "GJ", "Mcf", "MMcf", "Bcf", "m3"]

BTU_PER_CUBIC_FOOT = 1037.0
CUBIC_FEET_PER_M3 = 35.3147
# MMBtu in one of each unit.
MMBTU_PER_UNIT: dict[str, float] = {
    "MMBtu": 1.0,
    "therm": 0.1,
    "kWh": 1.0 / 293.07107,
    "GJ": 0.947817,
    "Mcf": BTU_PER_CUBIC_FOOT * 1e3 / 1e6,
    "MMcf": BTU_PER_CUBIC_FOOT,
    "Bcf": BTU_PER_CUBIC_FOOT * 1e3,
    "m3": BTU_PER_CUBIC_FOOT * CUBIC_FEET_PER_M3 / 1e6,
}
# EPA emission factor for natural gas combustion.
KG_CO2_PER_MMBTU = 53.06


def rounded(value: float) -> float:
    """Six significant digits: enough for any question, short for a small model to copy."""
    return float(f"{value:.6g}")


def convert(value: float, from_unit: str, to_unit: str) -> float:
    return rounded(value * MMBTU_PER_UNIT[from_unit] / MMBTU_PER_UNIT[to_unit])


def co2_tonnes(value: float, unit: str) -> float:
    return rounded(value * MMBTU_PER_UNIT[unit] * KG_CO2_PER_MMBTU / 1000.0)
