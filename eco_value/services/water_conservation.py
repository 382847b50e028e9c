"""Water conservation 水源涵养 (MEE 2020 water-balance method)."""

from __future__ import annotations

from .base import MM_PER_M, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="water_conservation", name_en="Water conservation", name_zh="水源涵养", category="regulating",
    layers=("precip", "aet", "land_cover@t2"),
    parameters=("gep.water_conservation.runoff_coefficient", "gep.water_conservation.price"),
    quantity_unit="m3",
    equation="Q = A * (P - R - ET) / 1000, R = P * alpha(class); V = Q * c_reservoir",
    source="MEE 2020 technical guideline, water conservation (water balance); LY/T 1721-2008 reservoir cost",
)


def compute(ctx: ServiceContext):
    """Q [m3/pixel] = A[m2] * (P - P*alpha - ET)[mm] / 1000 on classes with a runoff coefficient."""
    p = ctx.masked_float("precip")
    et = ctx.masked_float("aet")
    alpha = ctx.by_class("gep.water_conservation.runoff_coefficient")
    eligible = ctx.has_param("gep.water_conservation.runoff_coefficient")
    q = ((p - p * alpha - et) * ctx.pixel_area_m2 / MM_PER_M).where(eligible, 0.0)
    price = ctx.rebase(ctx.rules.value("gep.water_conservation.price"), int(ctx.rules.value("gep.water_conservation.price_year")))
    return finish(SPEC, ctx, q, q * price, price_cny_per_m3=price)

