"""The energy task sets, made from the bundled data with a fixed seed (see gen_data.py).

Every answer is computed by the same `data` functions the server's tools
call, so a task's answer is exactly what a right sequence of calls yields.
Kinds: `single` (one call), `multi_step` (look up, then convert or book then
list), `parallel` (two independent calls in one turn) and `no_tool`
(knowledge a tool cannot add).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from . import data
from .entities import CITIES, HUBS, LNG_TERMINALS, MONTHS_2024, MONTHS_2025, PIPELINES, SECTORS, STATES, STORAGE_REGIONS

SPLIT_SIZES = {"train": 330, "val": 60, "test": 120}
SEED = 7
UNITS_OUT = ["kWh", "GJ", "MMBtu", "therm"]


def _call(name: str, step: int = 0, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments, "step": step}


def _days(rng: random.Random) -> str:
    return rng.choice(list(data.load_data()["prices_usd_per_mmbtu"]["Henry Hub"]))


def _weeks() -> list[str]:
    return [row["week_ending"] for row in data.load_data()["storage"]["East"]]


def t_price(rng: random.Random) -> dict[str, Any]:
    hub, day = rng.choice(list(HUBS)), _days(rng)
    q = rng.choice(
        [
            f"What was the natural gas spot price at {hub} on {day}, in USD/MMBtu?",
            f"Give me the {hub} gas price for {day}.",
        ]
    )
    return {
        "question": q,
        "answer": data.price(hub, day)["price_usd_per_mmbtu"],
        "expected_calls": [_call("get_price", hub=hub, date=day)],
        "kind": "single",
    }


def t_price_stats(rng: random.Random) -> dict[str, Any]:
    hub = rng.choice(list(HUBS))
    month = rng.choice(MONTHS_2025)
    start, end = f"{month}-01", f"{month}-{rng.choice(['10', '15', '20', '28'])}"
    field = rng.choice(["mean", "min", "max"])
    word = {"mean": "average", "min": "lowest", "max": "highest"}[field]
    q = f"What was the {word} daily gas price at {hub} between {start} and {end} (USD/MMBtu)?"
    return {
        "question": q,
        "answer": data.price_stats(hub, start, end)[field],
        "expected_calls": [_call("get_price_stats", hub=hub, start_date=start, end_date=end)],
        "kind": "single",
    }


def t_storage(rng: random.Random) -> dict[str, Any]:
    region, week = rng.choice(list(STORAGE_REGIONS)), rng.choice(_weeks())
    q = f"How much working gas was in storage in the {region} region for the week ending {week}, in Bcf?"
    return {
        "question": q,
        "answer": data.storage(region, week)["level_bcf"],
        "expected_calls": [_call("get_storage", region=region, week_ending=week)],
        "kind": "single",
    }


def t_pipeline(rng: random.Random) -> dict[str, Any]:
    name, month = rng.choice(list(PIPELINES)), rng.choice(MONTHS_2025)
    info = data.pipeline(name, month)
    if rng.random() < 0.5:
        q, answer = f"What was the utilization of the {name} pipeline in {month}, in percent?", info["utilization_pct"]
    else:
        q, answer = f"What was the average flow on {name} in {month}, in MMcf/d?", info["avg_flow_mmcfd"]
    return {
        "question": q,
        "answer": answer,
        "expected_calls": [_call("get_pipeline", pipeline=name, month=month)],
        "kind": "single",
    }


def t_consumption(rng: random.Random) -> dict[str, Any]:
    state, sector, month = rng.choice(STATES), rng.choice(SECTORS), rng.choice(MONTHS_2024)
    q = f"How much natural gas did the {sector.replace('_', ' ')} sector in {state} consume in {month}, in MMcf?"
    return {
        "question": q,
        "answer": data.consumption(state, sector, month)["consumption_mmcf"],
        "expected_calls": [_call("get_consumption", state=state, sector=sector, month=month)],
        "kind": "single",
    }


def t_weather(rng: random.Random) -> dict[str, Any]:
    city, day = rng.choice(list(CITIES)), _days(rng)
    row = data.weather_demand(city, day)
    if rng.random() < 0.5:
        q, answer = f"What was the gas demand in {city} on {day}, in MMcf/d?", row["demand_mmcfd"]
    else:
        q, answer = f"How many heating degree days did {city} have on {day}?", row["hdd"]
    return {
        "question": q,
        "answer": answer,
        "expected_calls": [_call("get_weather_demand", city=city, date=day)],
        "kind": "single",
    }


def t_lng(rng: random.Random) -> dict[str, Any]:
    terminal, month = rng.choice(LNG_TERMINALS), rng.choice(MONTHS_2025)
    q = f"How many LNG cargoes loaded at {terminal} in {month}?"
    return {
        "question": q,
        "answer": data.lng_cargoes(terminal, None, month)["count"],
        "expected_calls": [_call("list_lng_cargoes", terminal=terminal, month=month)],
        "kind": "single",
        "alternatives": {"destination": [None, ""]},
    }


def t_convert(rng: random.Random) -> dict[str, Any]:
    units = ["MMBtu", "therm", "kWh", "GJ", "Mcf", "MMcf", "m3"]
    src, dst = rng.sample(units, 2)
    value = rng.choice([1, 5, 12, 50, 100, 250, 1000, 2500, 10000])
    q = rng.choice([f"Convert {value} {src} of natural gas to {dst}.", f"How many {dst} is {value} {src} of gas?"])
    return {
        "question": q,
        "answer": data.convert_units(value, src, dst)["result"],
        "expected_calls": [_call("convert_units", value=value, from_unit=src, to_unit=dst)],
        "kind": "single",
    }


def t_emissions(rng: random.Random) -> dict[str, Any]:
    unit = rng.choice(["MMBtu", "Mcf", "MMcf", "therm"])
    value = rng.choice([10, 100, 500, 1000, 5000, 20000])
    q = f"How many tonnes of CO2 does burning {value} {unit} of natural gas emit?"
    return {
        "question": q,
        "answer": data.emissions(value, unit)["co2_tonnes"],
        "expected_calls": [_call("estimate_emissions", value=value, unit=unit)],
        "kind": "single",
    }


def t_book(rng: random.Random) -> dict[str, Any]:
    name, day = rng.choice(list(PIPELINES)), _days(rng)
    volume = rng.choice([v for v in (50, 100, 150, 200, 250) if v <= data.spare_capacity(name, day)])
    q = f"Book {volume} MMcf/d of capacity on {name} for {day}. How much capacity is left free after the booking?"
    answer = data.spare_capacity(name, day) - volume
    return {
        "question": q,
        "answer": answer,
        "expected_calls": [_call("book_capacity", pipeline=name, date=day, volume_mmcfd=volume)],
        "kind": "single",
    }


def t_consumption_convert(rng: random.Random) -> dict[str, Any]:
    state, sector, month = rng.choice(STATES), rng.choice(SECTORS), rng.choice(MONTHS_2024)
    unit = rng.choice(UNITS_OUT)
    mmcf = data.consumption(state, sector, month)["consumption_mmcf"]
    q = f"What was the {sector.replace('_', ' ')} gas consumption of {state} in {month}, expressed in {unit}?"
    return {
        "question": q,
        "answer": data.convert_units(mmcf, "MMcf", unit)["result"],
        "kind": "multi_step",
        "expected_calls": [
            _call("get_consumption", state=state, sector=sector, month=month),
            _call("convert_units", 1, value=mmcf, from_unit="MMcf", to_unit=unit),
        ],
    }


def t_consumption_emissions(rng: random.Random) -> dict[str, Any]:
    state, sector, month = rng.choice(STATES), rng.choice(SECTORS), rng.choice(MONTHS_2024)
    mmcf = data.consumption(state, sector, month)["consumption_mmcf"]
    q = f"Estimate the CO2 emissions (tonnes) of the {sector.replace('_', ' ')} gas use of {state} in {month}."
    return {
        "question": q,
        "answer": data.emissions(mmcf, "MMcf")["co2_tonnes"],
        "kind": "multi_step",
        "expected_calls": [
            _call("get_consumption", state=state, sector=sector, month=month),
            _call("estimate_emissions", 1, value=mmcf, unit="MMcf"),
        ],
    }


def t_demand_convert(rng: random.Random) -> dict[str, Any]:
    city, day = rng.choice(list(CITIES)), _days(rng)
    unit = rng.choice(["GJ", "MMBtu", "kWh"])
    demand = data.weather_demand(city, day)["demand_mmcfd"]
    q = f"What was {city}'s gas demand on {day} in {unit} per day?"
    return {
        "question": q,
        "answer": data.convert_units(demand, "MMcf", unit)["result"],
        "kind": "multi_step",
        "expected_calls": [
            _call("get_weather_demand", city=city, date=day),
            _call("convert_units", 1, value=demand, from_unit="MMcf", to_unit=unit),
        ],
    }


def t_book_then_list(rng: random.Random) -> dict[str, Any]:
    name, day = rng.choice(list(PIPELINES)), _days(rng)
    volume = rng.choice([v for v in (75, 120, 300) if v <= data.spare_capacity(name, day)])
    q = f"Reserve {volume} MMcf/d on {name} for {day}, then check your bookings: what is your total booked volume?"
    return {
        "question": q,
        "answer": volume,
        "kind": "multi_step",
        "expected_calls": [
            _call("book_capacity", pipeline=name, date=day, volume_mmcfd=volume),
            _call("list_bookings", 1),
        ],
    }


def t_parallel_prices(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(list(HUBS), 2)
    day = _days(rng)
    q = f"What were the gas prices at {a} and at {b} on {day} (USD/MMBtu)?"
    answer = {a: data.price(a, day)["price_usd_per_mmbtu"], b: data.price(b, day)["price_usd_per_mmbtu"]}
    return {
        "question": q,
        "answer": answer,
        "kind": "parallel",
        "expected_calls": [_call("get_price", hub=a, date=day), _call("get_price", hub=b, date=day)],
    }


def t_parallel_consumption(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(STATES, 2)
    sector, month = rng.choice(SECTORS), rng.choice(MONTHS_2024)
    q = f"Compare the {sector.replace('_', ' ')} gas consumption of {a} and {b} in {month} (MMcf each)."
    answer = {s: data.consumption(s, sector, month)["consumption_mmcf"] for s in (a, b)}
    return {
        "question": q,
        "answer": answer,
        "kind": "parallel",
        "expected_calls": [_call("get_consumption", state=s, sector=sector, month=month) for s in (a, b)],
    }


def t_parallel_demand(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(list(CITIES), 2)
    day = _days(rng)
    q = f"What was the gas demand in {a} and in {b} on {day}, in MMcf/d?"
    answer = {c: data.weather_demand(c, day)["demand_mmcfd"] for c in (a, b)}
    return {
        "question": q,
        "answer": answer,
        "kind": "parallel",
        "expected_calls": [_call("get_weather_demand", city=c, date=day) for c in (a, b)],
    }


def t_parallel_storage(rng: random.Random) -> dict[str, Any]:
    a, b = rng.sample(list(STORAGE_REGIONS), 2)
    week = rng.choice(_weeks())
    q = f"Storage levels (Bcf) in the {a} and {b} regions for the week ending {week}?"
    answer = {r: data.storage(r, week)["level_bcf"] for r in (a, b)}
    return {
        "question": q,
        "answer": answer,
        "kind": "parallel",
        "expected_calls": [_call("get_storage", region=r, week_ending=week) for r in (a, b)],
    }


NO_TOOL = [  # (question phrasings, answer keyword)
    (["What does MMBtu stand for?", "Spell out the unit abbreviation MMBtu."], "million British thermal units"),
    (["What is the main component of natural gas?", "Which hydrocarbon makes up most of natural gas?"], "methane"),
    (["What does LNG stand for?", "Expand the abbreviation LNG."], "liquefied natural gas"),
    (["What is the chemical formula of methane?", "Write methane's molecular formula."], "CH4"),
    (["What does Bcf stand for in gas markets?", "Expand Bcf."], "billion cubic feet"),
    (["What does Mcf mean?", "Expand the unit Mcf."], "thousand cubic feet"),
    (["In which US state is Henry Hub located?", "Henry Hub sits in which state?"], "Louisiana"),
    (
        ["What does HDD stand for in weather-driven gas demand?", "Expand HDD as used for heating demand."],
        "heating degree day",
    ),
    (
        ["At roughly what temperature, in Celsius, does natural gas liquefy?", "LNG is cooled to about what, in C?"],
        "-162",
    ),
    (["What does TTF stand for?", "Expand TTF, the Dutch gas hub."], "Title Transfer Facility"),
    (["What does NBP stand for in the UK gas market?", "Expand NBP."], "National Balancing Point"),
    (
        [
            "What is the name of the agency that publishes weekly US gas storage data?",
            "Who publishes the US weekly natural gas storage report?",
        ],
        "EIA",
    ),
    (
        [
            "What gas is produced when natural gas burns completely, besides water?",
            "Complete combustion of methane yields water and what gas?",
        ],
        "carbon dioxide",
    ),
    (
        ["What do we call gas produced from shale rock?", "Gas extracted from shale formations is called what?"],
        "shale gas",
    ),
    (
        [
            "What is a heating degree day base temperature in Fahrenheit?",
            "HDD are counted below what temperature in F?",
        ],
        "65",
    ),
    (["What does FERC stand for?", "Expand FERC, the US energy regulator."], "Federal Energy Regulatory Commission"),
    (
        ["What unit are US natural gas futures quoted in?", "NYMEX natural gas futures are priced per what unit?"],
        "MMBtu",
    ),
    (
        [
            "What is the process of turning LNG back into gas called?",
            "Converting LNG back to gas at an import terminal is called what?",
        ],
        "regasification",
    ),
    (
        ["Which exchange lists the Henry Hub natural gas futures contract?", "Where do Henry Hub futures trade?"],
        "NYMEX",
    ),
    (
        ["What is the odorant commonly added to natural gas?", "Which smelly chemical is added to natural gas?"],
        "mercaptan",
    ),
    (["What does JKM stand for?", "Expand JKM, the Asian LNG benchmark."], "Japan Korea Marker"),
    (
        [
            "What season usually sees net withdrawals from US gas storage?",
            "In which season is gas usually withdrawn from storage?",
        ],
        "winter",
    ),
]

TOOL_TEMPLATES: list[tuple[Callable[[random.Random], dict[str, Any]], int]] = [
    (t_price, 9),
    (t_price_stats, 5),
    (t_storage, 6),
    (t_pipeline, 5),
    (t_consumption, 6),
    (t_weather, 6),
    (t_lng, 3),
    (t_convert, 7),
    (t_emissions, 4),
    (t_book, 4),
    (t_consumption_convert, 7),
    (t_consumption_emissions, 4),
    (t_demand_convert, 4),
    (t_book_then_list, 3),
    (t_parallel_prices, 6),
    (t_parallel_consumption, 4),
    (t_parallel_demand, 3),
    (t_parallel_storage, 3),
]


def _no_tool_tasks() -> list[dict[str, Any]]:
    return [
        {"question": q, "answer": answer, "expected_calls": [], "kind": "no_tool"}
        for phrasings, answer in NO_TOOL
        for q in phrasings
    ]


def _finish(task: dict[str, Any]) -> dict[str, Any]:
    alternatives = task.pop("alternatives", {})
    for call in task["expected_calls"]:
        call.setdefault("alternatives", {})
        for param, values in alternatives.items():
            if param not in call["arguments"]:
                call["alternatives"][param] = values
    return task


def generate_tasks(_data: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every task of every split, in a stable order with stable ids."""
    rng = random.Random(SEED)
    total = sum(SPLIT_SIZES.values())
    no_tool = _no_tool_tasks()
    pool: dict[str, dict[str, Any]] = {t["question"]: t for t in no_tool}
    templates = [t for t, weight in TOOL_TEMPLATES for _ in range(weight)]
    while len(pool) < total:
        task = _finish(rng.choice(templates)(rng))
        pool.setdefault(task["question"], task)
    tasks = list(pool.values())
    rng.shuffle(tasks)
    out, start = [], 0
    for split, size in SPLIT_SIZES.items():
        for i, task in enumerate(tasks[start : start + size]):
            out.append({"id": f"{split}-{i:04d}", "split": split, "tolerance": 0.01, **task})
        start += size
    return out
