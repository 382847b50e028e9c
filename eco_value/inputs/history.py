"""Land-cover history of parcels, for crediting eligibility (non-forest for N years, wetland, forest at start).

Every land-cover layer of the catalog (``variable = "land_cover"`` with a ``year``) is read on the run's
reference grid; parcels are burnt in by the centre-of-pixel rule (as everywhere in eco-value). Per
parcel, in m²: the forest area at each snapshot, the *afforested* land (not forest at t1, forest at
t2: the same definition as the carbon module's afforestation class), how much of that land was forest
at each snapshot before t1, and how much of it was wetland at any snapshot up to t1.
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize

from ..errors import InputError, Problem
from .catalog import load_catalog
from .classes import SCHEMES
from .readers import open_layer, reference_grid


def land_cover_snapshots(catalog_path) -> list[tuple[int, str]]:
    cat = load_catalog(catalog_path)
    return sorted((spec.year, key) for key, spec in cat.layers.items() if spec.variable == "land_cover" and spec.year is not None)


def parcel_land_history(catalog_path, parcels: list[tuple[str, object]]) -> dict:
    """Land-cover history of ``parcels`` (id, shapely geometry in the catalog's CRS).

    Returns ``{"snapshots": [years], "t1", "t2", "pixel_area_m2", "parcels": {id: {...}}}``.
    """
    cat = load_catalog(catalog_path)
    snaps = land_cover_snapshots(catalog_path)
    t1, t2 = cat.catalog.period
    years = [y for y, _ in snaps]
    if t1 not in years or t2 not in years:
        raise InputError([Problem("missing-layer", str(cat.source), "land_cover",
                                  f"land-cover snapshots {years} do not include the run's period years {t1} and {t2}",
                                  "declare a land_cover layer for each year of [catalog] period")])
    grid = reference_grid(cat)
    pix_m2 = abs(grid.transform.a * grid.transform.e)
    pid = rasterize([(g, i) for i, (_, g) in enumerate(parcels)], out_shape=grid.shape, transform=grid.transform,
                    fill=-1, dtype="int32")
    n = len(parcels)
    valid = pid >= 0
    idx = np.where(valid, pid, n)
    lc, forest, wetland = {}, {}, {}
    for y, key in snaps:
        spec = cat.layers[key]
        codes = SCHEMES.get(spec.classes or "")
        if codes is None:
            raise InputError([Problem("bad-classes", str(cat.path_of(spec.path)), key,
                                      f"land-cover classes '{spec.classes}' are not a known scheme",
                                      f"use one of {', '.join(SCHEMES)}")])
        arr = np.asarray(open_layer(cat, key, grid).values)
        lc[y] = arr
        forest[y] = np.isin(arr, [c for c, name in codes.items() if name == "forest"])
        wetland[y] = np.isin(arr, [c for c, name in codes.items() if name == "wetland"])

    def area(mask: np.ndarray) -> np.ndarray:
        return np.bincount(idx[mask & valid], minlength=n + 1)[:n] * pix_m2

    aff = ~forest[t1] & forest[t2]
    total = area(np.ones_like(valid))
    f_by_year = {y: area(forest[y]) for y in years}
    aff_m2 = area(aff)
    aff_forest = {y: area(aff & forest[y]) for y in years if y < t1}
    wet_any = np.zeros_like(valid)
    for y in years:
        if y <= t1:
            wet_any |= wetland[y]
    aff_wet = area(aff & wet_any)
    out = {}
    for i, (zid, _) in enumerate(parcels):
        out[zid] = {"area_px_m2": float(total[i]), "forest_m2": {y: float(f_by_year[y][i]) for y in years},
                    "afforested_m2": float(aff_m2[i]), "afforested_forest_m2": {y: float(v[i]) for y, v in aff_forest.items()},
                    "afforested_wetland_m2": float(aff_wet[i])}
    return {"snapshots": years, "t1": t1, "t2": t2, "pixel_area_m2": pix_m2, "parcels": out}
