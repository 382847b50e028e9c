"""Nodata inside the zones, per service: how much of each zone's valid land cover a service has no
result for (a layer its SPEC declares holds no data there), judged against
``rasters.max_service_nodata_share_per_zone`` of ``raster_inputs/validation.toml``.

Above the limit in a zone of the limit's ``zone_kinds`` the run is refused (one problem per service,
naming its layers, its worst zones and the fix); any other non-zero count is a warning.
"""

from __future__ import annotations

from ..errors import Problem
from ..inputs.catalog import Catalog
from ..inputs.limits import load_limits
from ..inputs.validate import GAP_KINDS
from ..roles import LAND_COVER_T2
from ..services import SERVICES
from .types import RunSums

KIND = "nodata-inside-zone"
WORST_SHOWN = 3   # zones named in a message (the worst shares first)


def _gappy_layers(service: str, cat: Catalog, stats: dict) -> list[str]:
    """The service's declared layers with nodata inside the region (all of them when not checked)."""
    keys = [k for k in SERVICES[service].SPEC.layer_keys if k != LAND_COVER_T2]
    hit = [k for k in keys if sum(stats.get(k, {}).get(g, 0) for g in GAP_KINDS) > 0]
    return hit or keys


def service_nodata_findings(sums: RunSums, cat: Catalog, stats: dict) -> tuple[list[Problem], list[Problem]]:
    """(refusals, warnings) for every service with nodata pixels inside a zone."""
    limits = load_limits()
    bound, kinds = limits.max_service_nodata_share_per_zone, limits.service_nodata_zone_kinds
    errors, warnings = [], []
    for svc in sums.services:
        over, found = [], []
        for kind, z in sums.zones.items():
            px, ha, area = z.nodata_px(svc), z.nodata_ha(svc), z.area_ha
            for zi, zid in enumerate(z.ids):
                if px[zi] <= 0:
                    continue
                share = min(float(ha[zi] / area[zi]), 1.0) if area[zi] > 0 else 1.0
                row = (share, kind, zid, float(px[zi]), float(ha[zi]))
                found.append(row)
                if bound is not None and kind in kinds and share > bound.value:
                    over.append(row)
        if not found:
            continue
        layers = _gappy_layers(svc, cat, stats)
        files = ", ".join(str(cat.path_of(cat.layers[k].path)) for k in layers if k in cat.layers) or str(cat.source)
        rows = sorted(over or found, key=lambda r: -r[0])
        shown = rows[:WORST_SHOWN] if over else [next(r for r in rows if r[1] == k) for k in sums.zones
                                                 if any(r[1] == k for r in rows)]   # the worst of each kind
        worst = "; ".join(f"{k} {zid}: {px:,.0f} px, {ha:,.2f} ha, {share:.2%} of its area"
                          for share, k, zid, px, ha in shown)
        what = (f"service '{svc}' has no result on valid land cover in {len(rows)} zone(s)"
                f"{' above the limit' if over else ''} because layer(s) "
                f"{', '.join(layers)} hold no data there (worst: {worst})")
        limit = (f"max_service_nodata_share_per_zone = {bound.value:g} ({bound.unit}) for "
                 f"{', '.join(kinds)} in raster_inputs/{limits.path.name}") if bound is not None else "no limit set"
        if over:
            errors.append(Problem(KIND, files, ", ".join(layers), f"{what}; their totals would silently lack that area",
                                  f"fill the gaps of {', '.join(layers)} (another product, gdal_fillnodata.py) or "
                                  f"correct the nodata declaration; the limit is {limit}"))
        else:
            warnings.append(Problem(KIND, files, ", ".join(layers), f"{what}; below the limit, so they count as nothing",
                                    f"fill them for complete totals; the limit is {limit}"))
    return errors, warnings
