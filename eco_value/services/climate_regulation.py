"""Climate regulation 气候调节: energy absorbed by plant transpiration and water evaporation."""

from __future__ import annotations

import xarray as xr

from .base import (DAYS_PER_YEAR, KJ_PER_KWH, LAND_COVER, MM_PER_M, PRICE_INDEX, LayerSpec, ServiceContext,
                   ServiceSpec, finish, nan_to_zero)

SPEC = ServiceSpec(
    key="climate_regulation", name_en="Climate regulation", name_zh="气候调节", category="regulating",
    layers=(LayerSpec("aet", "mm/yr"), LAND_COVER),
    parameters=("gep.climate_regulation.transpiration_energy", "gep.climate_regulation.cooling_days",
                "gep.climate_regulation.ac_efficiency", "gep.climate_regulation.latent_heat",
                "gep.climate_regulation.humidifier_energy", "gep.climate_regulation.price",
                "gep.climate_regulation.price_year", *PRICE_INDEX),
    quantity_unit="kWh",
    equation="E_pt = EPP(class) * A_m2 * D / (3600 r); E_w = ET_mm/1000 * A_m2 * D/365 [m3]; "
             "E_we = E_w * q_latent / r + E_w * y_humidifier; V = (E_pt + E_we) * p_elec",
    source="MEE 2020 guideline, climate regulation; humidifier term E_w * y as printed by Bai et al. 2017 "
           "(Acta Ecol. Sin. 37(19), Sect. 2.4.8 eq. for V_e)",
)


def climate_regulation_kwh(transpiration_energy_kj_per_m2_d, aet_mm, is_water, pixel_area_m2, cooling_days,
                           ac_efficiency, latent_heat_kwh_per_m3, humidifier_kwh_per_m3):
    """Electricity an air conditioner (and humidifier) would use to do the cooling of one pixel's
    transpiration and water-surface evaporation on the days with cooling demand.

    ``E_pt = EPP * A * D / (3600 * r)``;
    ``E_w = ET / 1000 * A * D / 365`` (m3 evaporated on those days);
    ``E_we = E_w * (q / r + y)`` on water, else 0; ``Q = E_pt + E_we``

    Parameters
    ----------
    transpiration_energy_kj_per_m2_d : array-like
        Energy EPP consumed by plant transpiration of the pixel's type [kJ/m2/d] (0 for types without).
    aet_mm : array-like
        Annual actual evapotranspiration ET [mm/yr].
    is_water : bool array-like
        Water-body pixels (evaporation term applies).
    pixel_area_m2 : float
        Pixel area A [m2].
    cooling_days : float
        Days with cooling demand D [d].
    ac_efficiency : float
        Air-conditioner energy efficiency ratio r [-].
    latent_heat_kwh_per_m3 : float
        Latent heat of evaporation q [kWh/m3].
    humidifier_kwh_per_m3 : float
        Electricity a humidifier uses to evaporate 1 m3 of water y [kWh/m3].

    Returns
    -------
    Climate regulation Q [kWh/yr per pixel]. NaN ET on a water pixel counts as 0 evaporation.

    References
    ----------
    MEE 2020 GEP guideline (气候调节); Bai et al. 2017, Acta Ecol. Sin. 37(19), Sect. 2.4.8 (V_e).
    """
    e_pt = transpiration_energy_kj_per_m2_d * pixel_area_m2 * cooling_days / (KJ_PER_KWH * ac_efficiency)
    e_w = aet_mm / MM_PER_M * pixel_area_m2 * cooling_days / DAYS_PER_YEAR
    per_m3 = latent_heat_kwh_per_m3 / ac_efficiency + humidifier_kwh_per_m3
    e_we = xr.where(is_water, e_w * per_m3, 0.0)
    return e_pt + nan_to_zero(e_we)


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    r = ctx.rules
    q = climate_regulation_kwh(ctx.by_class("gep.climate_regulation.transpiration_energy"), ctx.masked_float("aet"),
                               ctx.class_mask("water"), ctx.pixel_area_m2, r.value("gep.climate_regulation.cooling_days"),
                               r.value("gep.climate_regulation.ac_efficiency"), r.value("gep.climate_regulation.latent_heat"),
                               r.value("gep.climate_regulation.humidifier_energy"))
    price = ctx.rebase(r.value("gep.climate_regulation.price"), int(r.value("gep.climate_regulation.price_year")))
    return finish(SPEC, ctx, q, q * price)
