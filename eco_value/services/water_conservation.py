"""Water conservation 水源涵养 (MEE 2020 water-balance method)."""

from __future__ import annotations

from .base import LAND_COVER, MM_PER_M, PRICE_INDEX, LayerSpec, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="water_conservation", name_en="Water conservation", name_zh="水源涵养", category="regulating",
    layers=(LayerSpec("precip", "mm/yr"), LayerSpec("aet", "mm/yr"), LAND_COVER),
    parameters=("gep.water_conservation.runoff_coefficient", "gep.water_conservation.price",
                "gep.water_conservation.price_year", *PRICE_INDEX),
    quantity_unit="m3",
    equation="Q = A * (P - R - ET) / 1000, R = P * alpha(class); V = Q * c_reservoir (Q < 0 kept: net water balance)",
    source="MEE 2020 technical guideline, water conservation (water balance); LY/T 1721-2008 reservoir cost",
)


def water_conservation_m3(precip_mm, aet_mm, runoff_coefficient, pixel_area_m2):
    """Water retained by the ecosystem in a year, by the water-balance method.

    ``Q = A * (P - P * alpha - ET) / 1000``

    Parameters
    ----------
    precip_mm : array-like (numpy, xarray, dask-backed xarray)
        Annual precipitation P [mm/yr].
    aet_mm : array-like
        Annual actual evapotranspiration ET [mm/yr].
    runoff_coefficient : array-like or float
        Surface runoff coefficient alpha of the pixel's ecosystem type [-], 0..1 (R = P * alpha).
    pixel_area_m2 : float
        Area A of one pixel [m2].

    Returns
    -------
    Water conservation Q [m3/yr per pixel], same shape and array type as the inputs.

    Notes
    -----
    Sign: Q is **signed**. Where ET > P * (1 - alpha) the pixel loses more water than it receives and
    Q < 0; it is kept, not clipped. The guideline's quantity is the regional water balance
    ``Q = sum_i A_i (P_i - R_i - ET_i) * 1e-3`` (gep.md), a sum over all pixels of the ecosystem types,
    so a pixel's deficit offsets its neighbours' surplus; clipping each pixel at zero would raise the
    region's total above the guideline's balance and make it depend on the pixel size. NaN in P or ET
    gives NaN (no value).

    References
    ----------
    Ministry of Ecology and Environment (MEE), Technical guideline for accounting terrestrial gross
    ecosystem product (陆域生态系统生产总值核算技术指南), 2020: water conservation, water-balance equation.
    """
    return (precip_mm - precip_mm * runoff_coefficient - aet_mm) * pixel_area_m2 / MM_PER_M


def compute(ctx: ServiceContext):
    """Adapter: gather P, ET, alpha by class from the context; value at the reservoir cost."""
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    p = ctx.masked_float("precip")
    et = ctx.masked_float("aet")
    alpha = ctx.by_class("gep.water_conservation.runoff_coefficient")
    eligible = ctx.has_param("gep.water_conservation.runoff_coefficient")
    q = water_conservation_m3(p, et, alpha, ctx.pixel_area_m2).where(eligible, 0.0)
    price = ctx.rebase(r.value("gep.water_conservation.price"), int(r.value("gep.water_conservation.price_year")))
    return finish(SPEC, ctx, q, q * price, price_cny_per_m3=price)
