"""Climate regulation 气候调节: energy absorbed by plant transpiration and water evaporation."""

from __future__ import annotations

import xarray as xr

from .base import DAYS_PER_YEAR, KJ_PER_KWH, MM_PER_M, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="climate_regulation", name_en="Climate regulation", name_zh="气候调节", category="regulating",
    layers=("aet", "land_cover@t2"),
    parameters=("gep.climate_regulation",),
    quantity_unit="kWh",
    equation="E_pt = EPP(class) * A_m2 * D / (3600 r); E_we = ET_mm/1000 * A_m2 * D/365 * q_latent / r; V = (E_pt + E_we) * p_elec",
    source="MEE 2020 guideline, climate regulation",
)


def compute(ctx: ServiceContext):
    r = ctx.rules
    days = r.value("gep.climate_regulation.cooling_days")
    eff = r.value("gep.climate_regulation.ac_efficiency")
    epp = ctx.by_class("gep.climate_regulation.transpiration_energy")  # kJ/m2/d
    e_pt = epp * ctx.pixel_area_m2 * days / (KJ_PER_KWH * eff)
    et = ctx.masked_float("aet")
    e_we = xr.where(ctx.class_mask("water"),
                    et / MM_PER_M * ctx.pixel_area_m2 * days / DAYS_PER_YEAR * r.value("gep.climate_regulation.latent_heat") / eff, 0.0)
    q = e_pt + e_we.fillna(0.0)
    price = ctx.rebase(r.value("gep.climate_regulation.price"), int(r.value("gep.climate_regulation.price_year")))
    return finish(SPEC, ctx, q, q * price)
