"""Climate regulation 气候调节: energy absorbed by plant transpiration and water evaporation."""

from __future__ import annotations

import xarray as xr

from .base import DAYS_PER_YEAR, KJ_PER_KWH, MM_PER_M, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="climate_regulation", name_en="Climate regulation", name_zh="气候调节", category="regulating",
    layers=("aet", "land_cover@t2"),
    parameters=("gep.climate_regulation",),
    quantity_unit="kWh",
    equation="E_pt = EPP(class) * A_m2 * D / (3600 r); E_w = ET_mm/1000 * A_m2 * D/365 [m3]; "
             "E_we = E_w * q_latent / r + E_w * y_humidifier; V = (E_pt + E_we) * p_elec",
    source="MEE 2020 guideline, climate regulation; humidifier term E_w * y as printed by Bai et al. 2017 "
           "(Acta Ecol. Sin. 37(19), Sect. 2.4.8 eq. for V_e)",
)


def compute(ctx: ServiceContext):
    r = ctx.rules
    days = r.value("gep.climate_regulation.cooling_days")
    eff = r.value("gep.climate_regulation.ac_efficiency")
    epp = ctx.by_class("gep.climate_regulation.transpiration_energy")  # kJ/m2/d
    e_pt = epp * ctx.pixel_area_m2 * days / (KJ_PER_KWH * eff)
    et = ctx.masked_float("aet")
    e_w = et / MM_PER_M * ctx.pixel_area_m2 * days / DAYS_PER_YEAR   # m3 evaporated on cooling days
    per_m3 = r.value("gep.climate_regulation.latent_heat") / eff + r.value("gep.climate_regulation.humidifier_energy")
    e_we = xr.where(ctx.class_mask("water"), e_w * per_m3, 0.0)
    q = e_pt + e_we.fillna(0.0)
    price = ctx.rebase(r.value("gep.climate_regulation.price"), int(r.value("gep.climate_regulation.price_year")))
    return finish(SPEC, ctx, q, q * price)
