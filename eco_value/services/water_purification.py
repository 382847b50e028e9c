"""Water purification 水质净化 (COD, TN, TP removed by water bodies and wetlands)."""

from __future__ import annotations

import xarray as xr

from ..grid import PIXEL_DTYPE
from .base import LAND_COVER, PRICE_INDEX, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="water_purification", name_en="Water purification", name_zh="水质净化", category="regulating",
    layers=(LAND_COVER,),
    parameters=("gep.water_purification.capacity", "gep.water_purification.price",
                "gep.water_purification.price_year", *PRICE_INDEX),
    quantity_unit="t",
    equation="Q_j = A_ha * capacity_j(class); V = sum_j Q_j * c_j",
    source="MEE 2020 guideline, water purification",
)

POLLUTANTS = ("cod", "tn", "tp")


def pollutant_removed_t(is_water, is_wetland, capacity_water_t_per_ha, capacity_wetland_t_per_ha, pixel_area_ha):
    """One water pollutant (COD, TN or TP) removed by the water body or wetland of one pixel in a year.

    ``Q_j = A * (capacity_j,water if water, capacity_j,wetland if wetland, else 0)``

    Parameters
    ----------
    is_water, is_wetland : bool array-like
        Whether the pixel's ecosystem type is (under) water, resp. wetland.
    capacity_water_t_per_ha, capacity_wetland_t_per_ha : float
        Purification capacity of water bodies, resp. wetlands [t/ha/yr].
    pixel_area_ha : float
        Pixel area A [ha].

    Returns
    -------
    Pollutant removed Q_j [t/yr per pixel]; 0 on other types.

    References
    ----------
    MEE 2020 GEP guideline (水质净化).
    """
    cap = xr.where(is_water, capacity_water_t_per_ha, xr.where(is_wetland, capacity_wetland_t_per_ha, 0.0))
    return cap * pixel_area_ha


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    y = int(r.value("gep.water_purification.price_year"))
    q = 0.0
    value = 0.0
    water, wetland = ctx.class_mask("water"), ctx.class_mask("wetland")
    for j in POLLUTANTS:
        # capacities as PIXEL_DTYPE numbers: a where() of two Python floats would be a float64 array
        qj = pollutant_removed_t(water, wetland, PIXEL_DTYPE(r.value(f"gep.water_purification.capacity.{j}_water")),
                                 PIXEL_DTYPE(r.value(f"gep.water_purification.capacity.{j}_wetland")), ctx.pixel_area_ha)
        q = q + qj
        value = value + qj * ctx.rebase(r.value(f"gep.water_purification.price.{j}"), y)
    return finish(SPEC, ctx, q, value)
