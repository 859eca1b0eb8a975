"""Read-only queries over the bundled energy data: what the server's tools answer.

The server and the task generator both call these functions, so an expected
answer is by construction what the tool returns. Bad arguments raise
`QueryError` with a message meant for the model (it sees it as the tool result).
"""

from __future__ import annotations

import json
import logging
import statistics
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from fastmcp.exceptions import ToolError

from .units import MMBTU_PER_UNIT, co2_tonnes, convert, rounded

DATA_FILE = Path(__file__).parent / "data" / "energy.json"


class QueryError(ToolError):
    """A question the data cannot answer as asked: the model sees the message, the server logs no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message, log_level=logging.DEBUG)


@cache
def load_data() -> dict[str, Any]:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _pick(options: dict[str, Any], key: str, what: str) -> Any:
    if key not in options:
        raise QueryError(f"unknown {what} '{key}'; known: {', '.join(options)}")
    return options[key]


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except (TypeError, ValueError):
        raise QueryError(f"date must be YYYY-MM-DD, got '{text}'") from None


def _dated(series: dict[str, Any], day: str, what: str) -> Any:
    day = _day(day)
    if day not in series:
        first, last = min(series), max(series)
        raise QueryError(f"no {what} for {day}; data covers {first} to {last}")
    return series[day]


def _month(series: dict[str, Any], month: str, what: str) -> Any:
    if month not in series:
        raise QueryError(f"no {what} for month '{month}'; months are {min(series)} to {max(series)} (YYYY-MM)")
    return series[month]


def price(hub: str, day: str) -> dict[str, Any]:
    series = _pick(load_data()["prices_usd_per_mmbtu"], hub, "hub")
    return {"hub": hub, "date": _day(day), "price_usd_per_mmbtu": _dated(series, day, "price")}


def price_stats(hub: str, start_date: str, end_date: str) -> dict[str, Any]:
    series = _pick(load_data()["prices_usd_per_mmbtu"], hub, "hub")
    start, end = _day(start_date), _day(end_date)
    if start > end:
        raise QueryError(f"start_date {start} is after end_date {end}")
    values = [v for d, v in series.items() if start <= d <= end]
    if not values:
        raise QueryError(f"no prices between {start} and {end}; data covers {min(series)} to {max(series)}")
    return {
        "hub": hub,
        "start_date": start,
        "end_date": end,
        "days": len(values),
        "mean": rounded(statistics.fmean(values)),
        "min": min(values),
        "max": max(values),
    }


def storage(region: str, week_ending: str) -> dict[str, Any]:
    rows = _pick(load_data()["storage"], region, "storage region")
    day = _day(week_ending)
    for row in rows:
        if row["week_ending"] == day:
            return {"region": region, **row}
    weeks = f"{rows[0]['week_ending']} to {rows[-1]['week_ending']}"
    raise QueryError(f"no storage report for week ending {day}; reports are weekly (Fridays) from {weeks}")


def pipeline(name: str, month: str) -> dict[str, Any]:
    info = _pick(load_data()["pipelines"], name, "pipeline")
    flow = _month(info["avg_flow_mmcfd"], month, "flow data")
    return {
        "pipeline": name,
        "route": info["route"],
        "month": month,
        "capacity_mmcfd": info["capacity_mmcfd"],
        "avg_flow_mmcfd": flow,
        "utilization_pct": round(100 * flow / info["capacity_mmcfd"], 1),
    }


def consumption(state: str, sector: str, month: str) -> dict[str, Any]:
    by_sector = _pick(load_data()["consumption_mmcf"], state, "state")
    series = _pick(by_sector, sector, "sector")
    return {"state": state, "sector": sector, "month": month, "consumption_mmcf": _month(series, month, "consumption")}


def weather_demand(city: str, day: str) -> dict[str, Any]:
    series = _pick(load_data()["weather"], city, "city")
    return {"city": city, "date": _day(day), **_dated(series, day, "weather data")}


def lng_cargoes(
    terminal: str | None = None, destination: str | None = None, month: str | None = None
) -> dict[str, Any]:
    cargoes = [
        c
        for c in load_data()["lng_cargoes"]
        if (terminal is None or c["terminal"] == terminal)
        and (destination is None or c["destination"] == destination)
        and (month is None or c["loading_date"].startswith(month))
    ]
    return {
        "count": len(cargoes),
        "total_volume_m3": sum(c["volume_m3"] for c in cargoes),
        "cargoes": cargoes[:20],  # a long list would flood a small model's context
    }


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    _pick(MMBTU_PER_UNIT, from_unit, "unit")
    _pick(MMBTU_PER_UNIT, to_unit, "unit")
    return {"value": value, "from_unit": from_unit, "result": convert(value, from_unit, to_unit), "unit": to_unit}


def emissions(value: float, unit: str) -> dict[str, Any]:
    _pick(MMBTU_PER_UNIT, unit, "unit")
    return {"value": value, "unit": unit, "co2_tonnes": co2_tonnes(value, unit)}


def spare_capacity(name: str, day: str) -> float:
    """Capacity left on a pipeline on a day before any bookings: capacity minus the month's average flow."""
    info = pipeline(name, _day(day)[:7])
    return float(info["capacity_mmcfd"] - info["avg_flow_mmcfd"])
