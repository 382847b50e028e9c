"""Recreation 休闲旅游: visitors x spending (travel-cost proxy), allocated to natural land by weight."""

from __future__ import annotations

from .base import ServiceContext, ServiceSpec, finish

SPEC = ServiceSpec(
    key="recreation", name_en="Recreation and tourism", name_zh="休闲旅游", category="cultural",
    layers=("land_cover@t2",),
    parameters=("gep.recreation.allocation_weight",),
    quantity_unit="visitors",
    equation="V = visitors * spending per visitor; pixel share = w(class) / sum of w over the region",
    source="MEE 2020 guideline (travel cost method, simplified to spending); tourism statistics of the catalog",
)


def compute(ctx: ServiceContext):
    t = ctx.tables["tourism"].iloc[0]
    share = ctx.density_share(ctx.class_table("gep.recreation.allocation_weight"))
    visitors = float(t["visitors"])
    total = visitors * float(t["spending_cny_per_visitor"])
    return finish(SPEC, ctx, share * visitors, share * total)
