"""Generate the energy domain's bundled data once, from a fixed seed.

    python -m envs.energy.gen_data          # rewrites envs/energy/data/energy.json and tasks.jsonl

The numbers are synthetic but shaped like the real markets (hub spreads,
winter storage draws, sector seasonality), so questions have one checkable
answer. The output is committed; a test checks that regenerating it gives the
same bytes, so the data and its generator never drift apart.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .entities import (
    CITIES,
    HUBS,
    LNG_DESTINATIONS,
    LNG_TERMINALS,
    MONTHS_2024,
    MONTHS_2025,
    PIPELINES,
    PRICE_DAYS,
    PRICE_START,
    SECTORS,
    STATES,
    STORAGE_REGIONS,
    STORAGE_WEEKS,
)

DATA_DIR = Path(__file__).parent / "data"
SEED = 20261122


def _dates() -> list[str]:
    return [(PRICE_START + timedelta(days=i)).isoformat() for i in range(PRICE_DAYS)]


def _r(x: float, digits: int = 3) -> float:
    return round(x, digits)


def gen_prices(rng: random.Random) -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for hub, (_, base, vol) in HUBS.items():
        level, series = base, {}
        for day in _dates():
            level = max(0.2, level + rng.gauss(0, vol) + 0.05 * (base - level))
            series[day] = _r(level)
        prices[hub] = series
    return prices


def gen_storage(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    storage: dict[str, list[dict[str, Any]]] = {}
    for region, (start, draw) in STORAGE_REGIONS.items():
        level, rows = float(start), []
        for week in range(STORAGE_WEEKS):
            week_end = (date(2025, 1, 3) + timedelta(weeks=week)).isoformat()
            change = -draw * (1.2 - week / STORAGE_WEEKS) + rng.gauss(0, draw * 0.25)
            level += change
            five_year = start - draw * week * 0.95 + rng.gauss(0, draw * 0.3)
            rows.append(
                {
                    "week_ending": week_end,
                    "level_bcf": round(level),
                    "net_change_bcf": round(change),
                    "five_year_avg_bcf": round(five_year),
                }
            )
        storage[region] = rows
    return storage


def gen_pipelines(rng: random.Random) -> dict[str, dict[str, Any]]:
    pipelines: dict[str, dict[str, Any]] = {}
    for name, (route, capacity, load) in PIPELINES.items():
        flows = {m: round(capacity * min(0.99, load + rng.uniform(-0.06, 0.06))) for m in MONTHS_2025}
        pipelines[name] = {"route": route, "capacity_mmcfd": capacity, "avg_flow_mmcfd": flows}
    return pipelines


def gen_consumption(rng: random.Random) -> dict[str, dict[str, dict[str, int]]]:
    size = {
        "Texas": 4.6,
        "California": 2.1,
        "New York": 1.3,
        "Pennsylvania": 1.6,
        "Illinois": 1.0,
        "Louisiana": 1.7,
        "Ohio": 0.85,
        "Florida": 1.6,
    }
    sector_base = {"residential": 9000, "commercial": 7000, "industrial": 16000, "electric_power": 21000}
    seasonal = {"residential": 0.9, "commercial": 0.6, "industrial": 0.08, "electric_power": -0.35}
    out: dict[str, dict[str, dict[str, int]]] = {}
    for state in STATES:
        out[state] = {}
        for sector in SECTORS:
            rows = {}
            for i, month in enumerate(MONTHS_2024):
                winter = math.cos(2 * math.pi * i / 12)  # 1 in January, -1 in July
                value = sector_base[sector] * size[state] * (1 + seasonal[sector] * winter) * rng.uniform(0.92, 1.08)
                rows[month] = round(value)
            out[state][sector] = rows
    return out


def gen_weather(rng: random.Random) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for city, (jan_mean, base, per_hdd) in CITIES.items():
        rows = {}
        for i, day in enumerate(_dates()):
            temp = jan_mean + 12 * i / PRICE_DAYS + rng.gauss(0, 7)
            hdd = max(0.0, 65 - temp)
            rows[day] = {"avg_temp_f": _r(temp, 1), "hdd": _r(hdd, 1), "demand_mmcfd": round(base + per_hdd * hdd)}
        out[city] = rows
    return out


def gen_lng(rng: random.Random) -> list[dict[str, Any]]:
    cargoes = []
    for i in range(72):
        day = PRICE_START + timedelta(days=rng.randrange(PRICE_DAYS))
        cargoes.append(
            {
                "cargo_id": f"LNG-{2025}{i:03d}",
                "terminal": rng.choice(LNG_TERMINALS),
                "destination": rng.choice(LNG_DESTINATIONS),
                "loading_date": day.isoformat(),
                "volume_m3": rng.choice([145000, 160000, 170000, 174000, 180000]),
            }
        )
    return sorted(cargoes, key=lambda c: (c["loading_date"], c["cargo_id"]))


def generate() -> dict[str, Any]:
    rng = random.Random(SEED)
    return {
        "about": "Synthetic natural gas market data for mcpgym's energy env, made by envs/energy/gen_data.py.",
        "hubs": {hub: {"region": region} for hub, (region, _, _) in HUBS.items()},
        "prices_usd_per_mmbtu": gen_prices(rng),
        "storage": gen_storage(rng),
        "pipelines": gen_pipelines(rng),
        "consumption_mmcf": gen_consumption(rng),
        "weather": gen_weather(rng),
        "lng_cargoes": gen_lng(rng),
    }


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main() -> None:
    from .tasks_gen import generate_tasks

    DATA_DIR.mkdir(exist_ok=True)
    data = generate()
    (DATA_DIR / "energy.json").write_text(dump_json(data), encoding="utf-8")
    tasks = generate_tasks(data)
    lines = "".join(json.dumps(task, sort_keys=True) + "\n" for task in tasks)
    (DATA_DIR / "tasks.jsonl").write_text(lines, encoding="utf-8")
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task["split"]] = counts.get(task["split"], 0) + 1
    print(f"wrote {DATA_DIR}/energy.json and tasks.jsonl ({counts})")


if __name__ == "__main__":
    main()
