"""Carbon sequestration 固碳: the forest carbon engine's net sink, valued at the carbon price."""

from __future__ import annotations

from .base import CARBON_SINK, LAND_COVER, PRICE_INDEX, ServiceContext, ServiceSpec, finish, nan_to_zero

SPEC = ServiceSpec(
    key="carbon_sequestration", name_en="Carbon sequestration", name_zh="固碳", category="regulating",
    layers=(LAND_COVER,),
    parameters=("gep.carbon_sequestration.price", "gep.carbon_sequestration.price_year", *PRICE_INDEX),
    derived=(CARBON_SINK,),
    quantity_unit="t CO2e",
    equation="Q = net sink [t CO2e/ha/yr] * A_ha (carbon engine, stock difference); V = Q * p_CO2",
    source="MEE 2020 guideline (固碳); net sink from eco_value.carbon so GEP and the carbon account agree",
)


def carbon_sequestration_tco2e(sink_tco2e_per_ha_yr, pixel_area_ha):
    """CO2 removed by the ecosystem in a year on one pixel.

    ``Q = S * A``

    Parameters
    ----------
    sink_tco2e_per_ha_yr : array-like
        Net carbon sink S of the carbon engine [t CO2e/ha/yr] (stock-difference method; positive =
        removal, negative = emission). NaN (no data) counts as 0.
    pixel_area_ha : float
        Area A of one pixel [ha].

    Returns
    -------
    Carbon sequestration Q [t CO2e/yr per pixel]; negative where the pixel is a net source.

    References
    ----------
    MEE 2020 GEP guideline (固碳); IPCC 2006 Guidelines Vol. 4 Ch. 2 (stock-difference method).
    """
    return nan_to_zero(sink_tco2e_per_ha_yr) * pixel_area_ha


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    q = carbon_sequestration_tco2e(ctx.derived(CARBON_SINK), ctx.pixel_area_ha)
    price = ctx.rebase(r.value("gep.carbon_sequestration.price"), int(r.value("gep.carbon_sequestration.price_year")))
    return finish(SPEC, ctx, q, q * price, price_cny_per_tco2=price)
