"""Recreation 休闲旅游: visitors x spending (travel-cost proxy), allocated to natural land by weight."""

from __future__ import annotations

from .base import LAND_COVER, ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="recreation", name_en="Recreation and tourism", name_zh="休闲旅游", category="cultural",
    layers=(LAND_COVER,),
    parameters=("gep.recreation.allocation_weight",),
    tables=("tourism",),
    quantity_unit="visitors",
    equation="V = visitors * spending per visitor; pixel share = w(class) / sum of w over the region",
    source="MEE 2020 guideline (travel cost method, simplified to spending); tourism statistics of the catalog",
)


def recreation_cny(visitors, spending_cny_per_visitor, share):
    """Recreation value allocated to one pixel.

    ``(Q, V) = (share * N, share * (N * s))``

    Parameters
    ----------
    visitors : float
        Visitors N of the region in the year [visitors/yr].
    spending_cny_per_visitor : float
        Spending s per visitor [CNY/visitor], in prices of the statistics' year (current prices).
    share : array-like
        The pixel's share of the region's total [-] (class weight / sum of weights; sums to 1 over the region).

    Returns
    -------
    ``(visitors, value)``: visitors [visitors/yr per pixel] and value [CNY/yr per pixel].

    References
    ----------
    MEE 2020 GEP guideline (休闲旅游, travel-cost method; here simplified to spending).
    """
    return share * visitors, share * (visitors * spending_cny_per_visitor)


def compute(ctx: ServiceContext):
    ctx = ctx.bind(SPEC)
    t = ctx.tables["tourism"].iloc[0]
    share = ctx.density_share(ctx.class_table("gep.recreation.allocation_weight"))
    q, v = recreation_cny(float(t["visitors"]), float(t["spending_cny_per_visitor"]), share)
    return finish(SPEC, ctx, q, v)
