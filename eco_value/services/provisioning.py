"""Provisioning 物质产品: statistics x prices, allocated to pixels of the product's land-cover class."""

from __future__ import annotations

import numpy as np

from ..rules.ecosystem import N_IDS
from .base import LAND_COVER, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="provisioning", name_en="Provisioning (agri, forestry, livestock, fishery products)", name_zh="物质产品",
    category="provisioning",
    layers=(LAND_COVER,),
    parameters=(),
    tables=("provisioning",),
    quantity_unit="t",
    equation="V = sum_k quantity_k * price_k; allocated evenly over the pixels of product k's land-cover class",
    source="MEE 2020 guideline (market value method); statistics table of the catalog",
)

MASS_UNITS = {"t": 1.0}


def provisioning_cny(quantity, price_cny_per_unit):
    """Market value of products: ``V = sum_k quantity_k * price_k``.

    Parameters
    ----------
    quantity : array-like
        Quantity of each product k in its own unit (t, m3, head, ...) [unit/yr].
    price_cny_per_unit : array-like
        Price of product k [CNY/unit].

    Returns
    -------
    Value V [CNY/yr] (a number).

    References
    ----------
    MEE 2020 GEP guideline (物质产品, market value method).
    """
    return float((quantity * price_cny_per_unit).sum())


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    table = ctx.tables["provisioning"]
    q = 0.0
    value = 0.0
    for cls, grp in table.groupby("land_cover"):   # an ecosystem type (with its sub-types)
        onehot = np.zeros(N_IDS)
        onehot[ctx.types.ids_under(cls)] = 1.0
        v_cls = provisioning_cny(grp["quantity"], grp["price_cny_per_unit"])
        q_cls = float(grp.loc[grp["unit"].isin(list(MASS_UNITS)), "quantity"].sum())
        share = ctx.density_share(onehot)  # lazy: stays in the single compute
        value = value + share * v_cls
        q = q + share * q_cls
    return finish(SPEC, ctx, q, value, note="quantity counts products measured in tonnes; timber (m3) is valued but not in the tonnage")
