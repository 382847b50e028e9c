"""Air purification 空气净化 (SO2, NOx and dust absorbed per hectare by ecosystem type)."""

from __future__ import annotations

from .base import KG_PER_T, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="air_purification", name_en="Air purification", name_zh="空气净化", category="regulating",
    layers=("land_cover@t2",),
    parameters=("gep.air_purification",),
    quantity_unit="t",
    equation="Q_j = A_ha * q_j(class) / 1000; V = sum_j Q_j * c_j",
    source="MEE 2020 guideline; LY/T 1721-2008 absorption capacities and treatment costs",
)
POLLUTANTS = ("so2", "nox", "dust")


def compute(ctx: ServiceContext):
    r = ctx.rules
    y = int(r.value("gep.air_purification.price_year"))
    q_total = 0.0
    value = 0.0
    parts = {}
    for j in POLLUTANTS:
        qj = ctx.by_class(f"gep.air_purification.{j}") * ctx.pixel_area_ha / KG_PER_T
        parts[j] = qj
        q_total = q_total + qj
        value = value + qj * ctx.rebase(r.value(f"gep.air_purification.price.{j}"), y)
    return finish(SPEC, ctx, q_total, value, **parts)
