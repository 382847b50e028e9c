"""Unit strings eco-value understands. A catalog or rule set with any other unit is refused."""

from __future__ import annotations

KNOWN_UNITS: dict[str, str] = {
    "class": "categorical code (see the layer's class scheme)",
    "m": "metre (elevation above sea level)",
    "mm": "millimetre per year of water (precipitation, evapotranspiration)",
    "mm/yr": "millimetre per year",
    "m3/ha": "cubic metre of growing stock per hectare",
    "yr": "year (age)",
    "MJ mm/(ha h yr)": "rainfall erosivity R (RUSLE)",
    "t ha h/(ha MJ mm)": "soil erodibility K (RUSLE)",
    "fraction": "dimensionless share, 0..1",
    "g/cm3": "bulk density",
    "t/m3": "density",
    "1": "dimensionless",
    "t C/ha": "tonne of carbon per hectare",
    "t d.m./ha": "tonne of dry matter per hectare",
    "t d.m./m3": "tonne of dry matter per cubic metre of stem volume",
    "t C/t d.m.": "carbon fraction of dry matter",
    "t CO2e/t C": "CO2 per carbon",
    "t O2/t CO2": "oxygen per CO2",
    "g/mol": "molar mass",
    "m3/ha/yr": "volume increment",
    "t C/ha/yr": "carbon change per hectare per year",
    "CNY/m3": "yuan per cubic metre",
    "CNY/t": "yuan per tonne",
    "CNY/kWh": "yuan per kilowatt hour",
    "CNY/t CO2": "yuan per tonne of CO2",
    "CNY/t O2": "yuan per tonne of oxygen",
    "CNY/visitor": "yuan per visitor",
    "CNY": "yuan",
    "t/ha/yr": "tonne per hectare per year",
    "kg/ha/yr": "kilogram per hectare per year",
    "kWh/ha/yr": "kilowatt hour per hectare per year",
    "kWh/m3": "kilowatt hour per cubic metre",
    "days": "days per year",
    "kJ/m2/d": "kilojoule per square metre per day",
    "ha": "hectare",
    "people": "headcount",
    "visitors": "visits per year",
    "percent": "percent",
    "index": "price index (base year = 100)",
}


def is_known(unit: str) -> bool:
    return unit in KNOWN_UNITS
