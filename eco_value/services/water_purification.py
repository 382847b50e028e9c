"""Water purification 水质净化 (COD, TN, TP removed by water bodies and wetlands)."""

from __future__ import annotations

import xarray as xr

from .base import ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="water_purification", name_en="Water purification", name_zh="水质净化", category="regulating",
    layers=("land_cover@t2",),
    parameters=("gep.water_purification",),
    quantity_unit="t",
    equation="Q_j = A_ha * capacity_j(class); V = sum_j Q_j * c_j",
    source="MEE 2020 guideline, water purification",
)


def compute(ctx: ServiceContext):
    r = ctx.rules
    y = int(r.value("gep.water_purification.price_year"))
    q = 0.0
    value = 0.0
    for j in ("cod", "tn", "tp"):
        cap = xr.where(ctx.class_mask("water"), r.value(f"gep.water_purification.capacity.{j}_water"),
                       xr.where(ctx.class_mask("wetland"), r.value(f"gep.water_purification.capacity.{j}_wetland"), 0.0))
        qj = cap * ctx.pixel_area_ha
        q = q + qj
        value = value + qj * ctx.rebase(r.value(f"gep.water_purification.price.{j}"), y)
    return finish(SPEC, ctx, q, value)
