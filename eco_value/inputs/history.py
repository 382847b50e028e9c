"""Land-cover history of parcels, for crediting eligibility (non-forest for N years, wetland, forest at start).

Every land-cover layer of the catalog (``land_cover@t1``, ``land_cover@t2`` and any other with
``variable = "land_cover"`` and a ``year``, e.g. ``land_cover_t0``) is read on the run's reference grid in
engine ecosystem types (forest and wetland with their sub-types); parcels are burnt in by the centre-of-pixel rule (as everywhere in eco-value). Per
parcel, in m²: the forest area at each snapshot, the *afforested* land (not forest at t1, forest at
t2: the same definition as the carbon module's afforestation class), how much of that land was forest
at each snapshot before t1, and how much of it was wetland at any snapshot up to t1.
"""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize

from .. import roles
from ..errors import InputError, Problem
from .catalog import load_catalog
from .readers import open_layer, reference_grid


def land_cover_snapshots(catalog_path) -> list[tuple[int, str]]:
    """(year, layer key) of every land-cover layer: ``land_cover@t1``/``@t2`` at the period's years, any other
    land-cover layer (e.g. ``land_cover_t0``) at its declared ``year``."""
    cat = load_catalog(catalog_path)
    out = []
    for key, spec in cat.layers.items():
        if spec.variable != "land_cover":
            continue
        role, period = roles.split(key)
        year = roles.year_of(period, tuple(cat.catalog.period)) if period else spec.year
        if year is not None:
            out.append((int(year), key))
    if cat.sources:   # land cover@tN a 小班 inventory or DLTB source provides
        from .sources import provided_layers

        for key in provided_layers(cat):
            role, period = roles.split(key)
            if role == roles.LAND_COVER and period:
                out.append((roles.year_of(period, tuple(cat.catalog.period)), key))
    return sorted(out)


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
    from ..rules.ecosystem import ecosystem_types

    types = ecosystem_types()
    forest_ids, wetland_ids = types.ids_under("forest"), types.ids_under("wetland")
    forest, wetland = {}, {}
    for y, key in snaps:
        if key not in cat.layers:   # from [sources]: already in engine ecosystem-type ids
            from .readers import open_layers

            arr = np.asarray(open_layers(cat, keys=[key])[0][key].values)
            forest[y], wetland[y] = np.isin(arr, forest_ids), np.isin(arr, wetland_ids)
            continue
        spec = cat.layers[key]
        if spec.scheme is None:
            raise InputError([Problem("bad-classes", str(cat.path_of(spec.path)), key,
                                      "a land-cover layer without a class scheme cannot say what is forest or wetland",
                                      "declare its scheme (e.g. scheme = \"clcd\")")])
        arr = np.asarray(open_layer(cat, key, grid).values)     # engine ecosystem-type ids
        forest[y] = np.isin(arr, forest_ids)
        wetland[y] = np.isin(arr, wetland_ids)

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
