"""The energy MCP server: natural gas prices, storage, pipelines, demand, LNG and units.

    python -m envs.energy.server --transport stdio
    python -m envs.energy.server --transport http --port 8003   # MCP at /mcp, health at /health and /mcp/health

Every tool reads the bundled data (envs/energy/data/energy.json) except the
booking tools: `book_capacity` changes state and `list_bookings` reads it.
Bookings live in the MCP session's state, so each session (each rollout in
`per_session` isolation) starts with none, while the server process is shared.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastmcp import Context, FastMCP
from pydantic import Field

from . import data

Hub = Literal[
    "Henry Hub",
    "Waha",
    "Chicago Citygate",
    "SoCal Citygate",
    "Dominion South",
    "Algonquin Citygate",
    "TTF",
    "NBP",
    "JKM",
]
Region = Literal["East", "Midwest", "Mountain", "Pacific", "South Central"]
Pipeline = Literal[
    "Transco",
    "Tennessee Gas",
    "Texas Eastern",
    "Permian Highway",
    "Rockies Express",
    "El Paso Natural Gas",
    "Mountain Valley",
    "Northern Natural",
]
State = Literal["Texas", "California", "New York", "Pennsylvania", "Illinois", "Louisiana", "Ohio", "Florida"]
Sector = Literal["residential", "commercial", "industrial", "electric_power"]
City = Literal["Chicago", "New York", "Boston", "Houston", "Denver", "Atlanta"]
Terminal = Literal["Sabine Pass", "Corpus Christi", "Cameron", "Freeport", "Calcasieu Pass", "Cove Point"]
Unit = Literal["MMBtu", "therm", "kWh", "GJ", "Mcf", "MMcf", "Bcf", "m3"]
Day = Annotated[str, Field(description="YYYY-MM-DD")]
Month = Annotated[str, Field(description="YYYY-MM")]

INSTRUCTIONS = "Natural gas market data (2024-2025): hub prices, storage, pipelines, demand, LNG, unit conversions."


# The tools, in the order the server lists them; each one's docstring is its description.


def get_price(hub: Hub, date: Day) -> dict[str, Any]:
    """Daily spot price of natural gas at a hub, USD/MMBtu (2025-01-01 to 2025-03-31)."""
    return data.price(hub, date)


def get_price_stats(hub: Hub, start_date: Day, end_date: Day) -> dict[str, Any]:
    """Mean, min and max daily price at a hub over a date range, USD/MMBtu."""
    return data.price_stats(hub, start_date, end_date)


def get_storage(region: Region, week_ending: Day) -> dict[str, Any]:
    """Weekly working gas in storage for a region, Bcf (reports on Fridays, 2025-01-03 to 2025-03-28)."""
    return data.storage(region, week_ending)


def get_pipeline(pipeline: Pipeline, month: Month) -> dict[str, Any]:
    """Pipeline route, capacity, average flow (MMcf/d) and utilization for a month of 2025-01..2025-03."""
    return data.pipeline(pipeline, month)


def get_consumption(state: State, sector: Sector, month: Month) -> dict[str, Any]:
    """Natural gas consumption of a US state's sector in a month of 2024, MMcf."""
    return data.consumption(state, sector, month)


def get_weather_demand(city: City, date: Day) -> dict[str, Any]:
    """Average temperature (F), heating degree days and gas demand (MMcf/d) of a city on a day."""
    return data.weather_demand(city, date)


def list_lng_cargoes(
    terminal: Terminal | None = None, destination: str | None = None, month: Month | None = None
) -> dict[str, Any]:
    """US LNG export cargoes, filtered by terminal, destination country and/or loading month."""
    return data.lng_cargoes(terminal, destination, month)


def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> dict[str, Any]:
    """Convert a natural gas quantity between energy and volume units."""
    return data.convert_units(value, from_unit, to_unit)


def estimate_emissions(value: float, unit: Unit) -> dict[str, Any]:
    """CO2 emitted by burning a quantity of natural gas, tonnes."""
    return data.emissions(value, unit)


async def book_capacity(pipeline: Pipeline, date: Day, volume_mmcfd: float, ctx: Context) -> dict[str, Any]:
    """Book firm capacity on a pipeline for a day; returns the booking and the capacity still free."""
    if volume_mmcfd <= 0:
        raise data.QueryError("volume_mmcfd must be positive")
    bookings: list[dict[str, Any]] = list(await ctx.get_state("bookings") or [])
    booked = sum(b["volume_mmcfd"] for b in bookings if b["pipeline"] == pipeline and b["date"] == date)
    free = data.spare_capacity(pipeline, date) - booked
    if volume_mmcfd > free:
        raise data.QueryError(f"only {free:g} MMcf/d free on {pipeline} on {date}; requested {volume_mmcfd:g}")
    booking = {
        "booking_id": f"B{len(bookings) + 1:03d}",
        "pipeline": pipeline,
        "date": date,
        "volume_mmcfd": volume_mmcfd,
    }
    bookings.append(booking)
    await ctx.set_state("bookings", bookings)
    return {**booking, "remaining_mmcfd": free - volume_mmcfd}


async def list_bookings(ctx: Context) -> dict[str, Any]:
    """Capacity bookings made in this session and their total volume (MMcf/d)."""
    bookings = list(await ctx.get_state("bookings") or [])
    return {"bookings": bookings, "total_mmcfd": sum(b["volume_mmcfd"] for b in bookings)}


TOOLS = (
    get_price,
    get_price_stats,
    get_storage,
    get_pipeline,
    get_consumption,
    get_weather_demand,
    list_lng_cargoes,
    convert_units,
    estimate_emissions,
    book_capacity,
    list_bookings,
)


def build_server(name: str = "energy") -> FastMCP:
    """A new server instance (the in-process factory for `per_process` isolation)."""
    mcp = FastMCP(name, instructions=INSTRUCTIONS)
    for tool in TOOLS:
        mcp.tool(tool)
    return mcp


def main(argv: list[str] | None = None) -> None:
    from envs.serve_mcp import serve_main

    description = __doc__.split("\n\n")[0]
    serve_main(build_server, prog="python -m envs.energy.server", description=description, port=8003, argv=argv)


if __name__ == "__main__":
    main()
