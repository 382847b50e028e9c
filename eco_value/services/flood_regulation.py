"""Flood regulation 洪水调蓄 (vegetation storm retention + storage of water bodies; MEE 2020)."""

from __future__ import annotations

import xarray as xr

from .base import MM_PER_M, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="flood_regulation", name_en="Flood regulation", name_zh="洪水调蓄", category="regulating",
    layers=("precip", "land_cover@t2"),
    parameters=("gep.flood_regulation", "gep.water_conservation.price"),
    quantity_unit="m3",
    equation="Q_veg = A * P * s_storm * (1 - r_storm(class)) / 1000; Q_water = A * d_storage; V = Q * c_reservoir",
    source="MEE 2020 guideline, flood regulation; reservoir construction cost LY/T 1721-2008",
)


def compute(ctx: ServiceContext):
    r = ctx.rules
    p = ctx.masked_float("precip")
    coef = ctx.by_class("gep.flood_regulation.storm_runoff_coefficient")
    veg = ctx.has_param("gep.flood_regulation.storm_runoff_coefficient")
    q_veg = (p * r.value("gep.flood_regulation.storm_share") * (1.0 - coef) * ctx.pixel_area_m2 / MM_PER_M).where(veg, 0.0)
    q_water = xr.where(ctx.class_mask("water"), r.value("gep.flood_regulation.water_storage_depth_m") * ctx.pixel_area_m2, 0.0)
    q = q_veg + q_water
    price = ctx.rebase(r.value("gep.water_conservation.price"), int(r.value("gep.water_conservation.price_year")))
    return finish(SPEC, ctx, q, q * price)
