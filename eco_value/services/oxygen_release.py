"""Oxygen release 释氧: Q_O2 = (32/44) * Q_CO2 of the net sink (MEE 2020; not in NDRC 2022)."""

from __future__ import annotations

from .base import CARBON_SINK, LAND_COVER, PRICE_INDEX, ServiceContext, ServiceSpec, finish
from .carbon_sequestration import carbon_sequestration_tco2e

SPEC = ServiceSpec(
    key="oxygen_release", name_en="Oxygen release", name_zh="释氧", category="regulating",
    layers=(LAND_COVER,),
    parameters=("constants.molar_ratio_o2_co2", "gep.oxygen_release.price", "gep.oxygen_release.price_year",
                *PRICE_INDEX),
    derived=(CARBON_SINK,),
    quantity_unit="t O2",
    equation="Q_O2 = (32/44) * Q_CO2; V = Q_O2 * p_O2",
    source="MEE 2020 guideline (释氧)",
)


def oxygen_release_t(sink_tco2e_per_ha_yr, pixel_area_ha, o2_per_co2):
    """Oxygen released with the carbon the ecosystem fixes, on one pixel.

    ``Q_O2 = (S * A) * (32/44)``

    Parameters
    ----------
    sink_tco2e_per_ha_yr : array-like
        Net carbon sink S [t CO2e/ha/yr] (NaN counts as 0).
    pixel_area_ha : float
        Pixel area A [ha].
    o2_per_co2 : float
        Mass ratio O2 / CO2 of photosynthesis [t O2 / t CO2] (32/44).

    Returns
    -------
    Oxygen release [t O2/yr per pixel]; negative where the pixel is a net carbon source.

    References
    ----------
    MEE 2020 GEP guideline (释氧).
    """
    return carbon_sequestration_tco2e(sink_tco2e_per_ha_yr, pixel_area_ha) * o2_per_co2


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    q = oxygen_release_t(ctx.derived(CARBON_SINK), ctx.pixel_area_ha, r.value("constants.molar_ratio_o2_co2"))
    price = ctx.rebase(r.value("gep.oxygen_release.price"), int(r.value("gep.oxygen_release.price_year")))
    return finish(SPEC, ctx, q, q * price)
