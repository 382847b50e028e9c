"""Carbon sequestration 固碳: the forest carbon engine's net sink, valued at the carbon price."""

from __future__ import annotations

from .base import ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="carbon_sequestration", name_en="Carbon sequestration", name_zh="固碳", category="regulating",
    layers=("volume@t1", "volume@t2", "forest_type@t1", "forest_type@t2", "land_cover@t1", "land_cover@t2"),
    parameters=("carbon", "gep.carbon_sequestration.price"),
    quantity_unit="t CO2e",
    equation="Q = net sink [t CO2e/ha/yr] * A_ha (carbon engine, stock difference); V = Q * p_CO2",
    source="MEE 2020 guideline (固碳); net sink from eco_value.carbon so GEP and the carbon account agree",
)


def compute(ctx: ServiceContext):
    if ctx.carbon_sink_tco2e_per_ha_yr is None:
        raise ValueError("carbon_sequestration needs the carbon engine's sink in the context")
    q = ctx.carbon_sink_tco2e_per_ha_yr.fillna(0.0) * ctx.pixel_area_ha
    price = ctx.rebase(ctx.rules.value("gep.carbon_sequestration.price"), int(ctx.rules.value("gep.carbon_sequestration.price_year")))
    return finish(SPEC, ctx, q, q * price, price_cny_per_tco2=price)
