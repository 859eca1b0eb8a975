"""A small stdio MCP server for the "Add your own environment" example: a parts warehouse.

It imports nothing but fastmcp, so `python server.py` runs from any checkout.
mcpgym launches it from mcp.json in this folder; no mcpgym code is involved.
"""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP

STOCK = {
    "BOLT-M8": {"name": "M8 hex bolt", "category": "fasteners", "on_hand": 1240, "unit_price_usd": 0.18},
    "NUT-M8": {"name": "M8 nut", "category": "fasteners", "on_hand": 2015, "unit_price_usd": 0.05},
    "VALVE-2IN": {"name": "2 inch ball valve", "category": "valves", "on_hand": 37, "unit_price_usd": 41.5},
    "VALVE-4IN": {"name": "4 inch gate valve", "category": "valves", "on_hand": 9, "unit_price_usd": 182.0},
    "GASKET-4IN": {"name": "4 inch flange gasket", "category": "seals", "on_hand": 310, "unit_price_usd": 3.2},
}

mcp = FastMCP("inventory")


@mcp.tool
def get_stock(sku: str) -> dict[str, Any]:
    """Stock on hand and unit price of one SKU."""
    if sku not in STOCK:
        raise ValueError(f"unknown SKU '{sku}'; known: {', '.join(STOCK)}")
    return {"sku": sku, **STOCK[sku]}


@mcp.tool
def list_skus(category: str) -> list[str]:
    """SKUs in a category (fasteners, valves, seals)."""
    return [sku for sku, item in STOCK.items() if item["category"] == category]


@mcp.tool
def stock_value(sku: str) -> float:
    """Value of the stock on hand of one SKU, USD."""
    item = STOCK[sku]
    return round(item["on_hand"] * item["unit_price_usd"], 2)


if __name__ == "__main__":
    mcp.run(transport="stdio", show_banner=False, log_level="WARNING")
