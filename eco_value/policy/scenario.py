"""A changed land cover valued on the same inputs (damage, project): the scenario the engine applies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..roles import FOREST_TYPE_T2, LAND_COVER_T2, VOLUME_T2
from ..rules.ecosystem import ecosystem_types


@dataclass
class Scenario:
    """A changed land cover (damage, project): ``lulc_after`` (ecosystem-type ids) replaces the land
    cover at t2 where ``changed``.

    Changed pixels lose their stand (volume and species 0 unless the new type is a forest type), take
    the vegetation cover ``fvc_by_class`` (indexed by type id) of the new type, and their annual
    carbon sink becomes 0 (the one-off loss of stock is reported separately, never as a yearly flow).
    """

    changed: xr.DataArray
    lulc_after: xr.DataArray
    fvc_by_class: np.ndarray
    lulc_after_np: np.ndarray | None = None   # the whole changed land cover, for the region's class extent


def apply_scenario(layers: dict[str, xr.DataArray], sc: Scenario) -> dict[str, xr.DataArray]:
    out = dict(layers)
    ch = sc.changed
    forest = ecosystem_types().ids_under("forest")

    def keep_attrs(new, old):
        new.attrs = dict(old.attrs)
        return new

    lc = layers[LAND_COVER_T2]
    out[LAND_COVER_T2] = keep_attrs(xr.where(ch, sc.lulc_after, lc).astype(lc.dtype), lc)
    lost = ch & ~sc.lulc_after.isin(forest)
    out[VOLUME_T2] = keep_attrs(xr.where(lost, 0.0, layers[VOLUME_T2]).astype(layers[VOLUME_T2].dtype), layers[VOLUME_T2])
    out[FOREST_TYPE_T2] = keep_attrs(xr.where(lost, 0, layers[FOREST_TYPE_T2]).astype(layers[FOREST_TYPE_T2].dtype),
                                     layers[FOREST_TYPE_T2])
    table = sc.fvc_by_class
    fvc_new = xr.DataArray(sc.lulc_after.data.map_blocks(lambda c: np.take(table, c), dtype="float64"),
                           dims=lc.dims, coords=lc.coords)
    out["fvc"] = keep_attrs(xr.where(ch, fvc_new, layers["fvc"]).astype(layers["fvc"].dtype), layers["fvc"])
    return out
