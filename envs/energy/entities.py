"""The energy domain's entities: hubs, storage regions, pipelines, states, sectors, cities, LNG
terminals and the months covered. `gen_data` makes the numbers from them; `tasks_gen` asks about them."""

from __future__ import annotations

from datetime import date

HUBS = {  # name -> (region, base price USD/MMBtu, daily volatility)
    "Henry Hub": ("Gulf Coast", 3.4, 0.08),
    "Waha": ("Permian", 1.3, 0.15),
    "Chicago Citygate": ("Midwest", 3.2, 0.09),
    "SoCal Citygate": ("California", 4.4, 0.1),
    "Dominion South": ("Appalachia", 2.8, 0.09),
    "Algonquin Citygate": ("New England", 6.5, 0.25),
    "TTF": ("Netherlands", 12.8, 0.3),
    "NBP": ("United Kingdom", 12.3, 0.3),
    "JKM": ("Japan-Korea", 14.1, 0.3),
}
PRICE_START, PRICE_DAYS = date(2025, 1, 1), 90
STORAGE_REGIONS = {  # region -> (start of January level Bcf, weekly draw Bcf)
    "East": (820, 38),
    "Midwest": (980, 45),
    "Mountain": (240, 8),
    "Pacific": (285, 10),
    "South Central": (1150, 52),
}
STORAGE_WEEKS = 13
PIPELINES = {  # name -> (route, capacity MMcf/d, typical load factor)
    "Transco": ("Gulf Coast to New York", 18000, 0.82),
    "Tennessee Gas": ("Louisiana to New England", 9500, 0.74),
    "Texas Eastern": ("Texas to New Jersey", 11200, 0.77),
    "Permian Highway": ("Waha to Katy", 2100, 0.95),
    "Rockies Express": ("Colorado to Ohio", 4400, 0.68),
    "El Paso Natural Gas": ("Permian to California", 6300, 0.71),
    "Mountain Valley": ("West Virginia to Virginia", 2000, 0.61),
    "Northern Natural": ("Texas to Minnesota", 5700, 0.66),
}
MONTHS_2025 = ["2025-01", "2025-02", "2025-03"]
STATES = ["Texas", "California", "New York", "Pennsylvania", "Illinois", "Louisiana", "Ohio", "Florida"]
SECTORS = ["residential", "commercial", "industrial", "electric_power"]
MONTHS_2024 = [f"2024-{m:02d}" for m in range(1, 13)]
CITIES = {  # city -> (January mean temperature F, demand at 0 HDD MMcf/d, MMcf/d per HDD)
    "Chicago": (26, 900, 38),
    "New York": (33, 1400, 52),
    "Boston": (30, 500, 21),
    "Houston": (53, 800, 15),
    "Denver": (31, 350, 14),
    "Atlanta": (44, 420, 17),
}
LNG_TERMINALS = ["Sabine Pass", "Corpus Christi", "Cameron", "Freeport", "Calcasieu Pass", "Cove Point"]
LNG_DESTINATIONS = ["Netherlands", "United Kingdom", "France", "Japan", "South Korea", "China", "India", "Spain"]
