"""Flood regulation 洪水调蓄 (vegetation storm retention + storage of water bodies; MEE 2020)."""

from __future__ import annotations

import xarray as xr

from .base import LAND_COVER, MM_PER_M, PRICE_INDEX, LayerSpec, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="flood_regulation", name_en="Flood regulation", name_zh="洪水调蓄", category="regulating",
    layers=(LayerSpec("precip", "mm/yr"), LAND_COVER),
    parameters=("gep.flood_regulation.storm_runoff_coefficient", "gep.flood_regulation.storm_share",
                "gep.flood_regulation.water_storage_depth_m", "gep.water_conservation.price",
                "gep.water_conservation.price_year", *PRICE_INDEX),
    quantity_unit="m3",
    equation="Q_veg = A * P * s_storm * (1 - r_storm(class)) / 1000; Q_water = A * d_storage; V = Q * c_reservoir",
    source="MEE 2020 guideline, flood regulation; reservoir construction cost LY/T 1721-2008",
)


def flood_regulation_m3(precip_mm, storm_share, storm_runoff_coefficient, is_vegetation, is_water,
                        water_storage_depth_m, pixel_area_m2):
    """Storm water held back by vegetation plus the flood storage of water bodies, on one pixel.

    ``Q = [P * s * (1 - r) * A / 1000 if vegetation] + [d * A if water]``

    Parameters
    ----------
    precip_mm : array-like
        Annual precipitation P [mm/yr].
    storm_share : float
        Share s of annual precipitation falling in storm events [-].
    storm_runoff_coefficient : array-like or float
        Storm runoff coefficient r of the pixel's ecosystem type [-], 0..1.
    is_vegetation : bool array-like
        Pixels whose type has a storm runoff coefficient (vegetation retention applies).
    is_water : bool array-like
        Pixels of water bodies (storage applies).
    water_storage_depth_m : float
        Flood storage depth d of water bodies [m].
    pixel_area_m2 : float
        Pixel area A [m2].

    Returns
    -------
    Flood regulation Q [m3/yr per pixel]; 0 on pixels neither vegetation nor water; NaN P on a
    vegetation pixel gives NaN.

    References
    ----------
    MEE 2020 GEP guideline (洪水调蓄).
    """
    q_veg = xr.where(is_vegetation, precip_mm * storm_share * (1.0 - storm_runoff_coefficient) * pixel_area_m2 / MM_PER_M, 0.0)
    # + d * A on water: added where it applies (a where() of two numbers would be a float64 array)
    return xr.where(is_water, q_veg + water_storage_depth_m * pixel_area_m2, q_veg)


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    q = flood_regulation_m3(ctx.masked_float("precip"), r.value("gep.flood_regulation.storm_share"),
                            ctx.by_class("gep.flood_regulation.storm_runoff_coefficient"),
                            ctx.has_param("gep.flood_regulation.storm_runoff_coefficient"), ctx.class_mask("water"),
                            r.value("gep.flood_regulation.water_storage_depth_m"), ctx.pixel_area_m2)
    price = ctx.rebase(r.value("gep.water_conservation.price"), int(r.value("gep.water_conservation.price_year")))
    return finish(SPEC, ctx, q, q * price)
