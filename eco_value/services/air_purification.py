"""Air purification 空气净化 (SO2, NOx and dust absorbed per hectare by ecosystem type)."""

from __future__ import annotations

from .base import KG_PER_T, LAND_COVER, PRICE_INDEX, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="air_purification", name_en="Air purification", name_zh="空气净化", category="regulating",
    layers=(LAND_COVER,),
    parameters=("gep.air_purification.so2", "gep.air_purification.nox", "gep.air_purification.dust",
                "gep.air_purification.price", "gep.air_purification.price_year", *PRICE_INDEX),
    quantity_unit="t",
    equation="Q_j = A_ha * q_j(class) / 1000; V = sum_j Q_j * c_j",
    source="MEE 2020 guideline; LY/T 1721-2008 absorption capacities and treatment costs",
)

POLLUTANTS = ("so2", "nox", "dust")


def pollutant_absorbed_t(absorption_kg_per_ha, pixel_area_ha):
    """One air pollutant absorbed by the vegetation of one pixel in a year.

    ``Q_j = q_j * A / 1000``

    Parameters
    ----------
    absorption_kg_per_ha : array-like
        Absorption capacity q_j of the pixel's ecosystem type [kg/ha/yr] (0 for types without one).
    pixel_area_ha : float
        Pixel area A [ha].

    Returns
    -------
    Pollutant absorbed Q_j [t/yr per pixel].

    References
    ----------
    MEE 2020 GEP guideline (空气净化); LY/T 1721-2008 (absorption capacities by forest type).
    """
    return absorption_kg_per_ha * pixel_area_ha / KG_PER_T


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    y = int(r.value("gep.air_purification.price_year"))
    q_total = 0.0
    value = 0.0
    parts = {}
    for j in POLLUTANTS:
        qj = pollutant_absorbed_t(ctx.by_class(f"gep.air_purification.{j}"), ctx.pixel_area_ha)
        parts[j] = qj
        q_total = q_total + qj
        value = value + qj * ctx.rebase(r.value(f"gep.air_purification.price.{j}"), y)
    return finish(SPEC, ctx, q_total, value, **parts)
