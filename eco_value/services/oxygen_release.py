"""Oxygen release 释氧: Q_O2 = (32/44) * Q_CO2 of the net sink (MEE 2020; not in NDRC 2022)."""

from __future__ import annotations

from .base import ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="oxygen_release", name_en="Oxygen release", name_zh="释氧", category="regulating",
    layers=("volume@t1", "volume@t2", "forest_type@t1", "forest_type@t2", "land_cover@t1", "land_cover@t2"),
    parameters=("constants.molar_ratio_o2_co2", "gep.oxygen_release.price"),
    quantity_unit="t O2",
    equation="Q_O2 = (32/44) * Q_CO2; V = Q_O2 * p_O2",
    source="MEE 2020 guideline (释氧)",
)


def compute(ctx: ServiceContext):
    q_co2 = ctx.carbon_sink_tco2e_per_ha_yr.fillna(0.0) * ctx.pixel_area_ha
    q = q_co2 * ctx.rules.value("constants.molar_ratio_o2_co2")
    price = ctx.rebase(ctx.rules.value("gep.oxygen_release.price"), int(ctx.rules.value("gep.oxygen_release.price_year")))
    return finish(SPEC, ctx, q, q * price)
