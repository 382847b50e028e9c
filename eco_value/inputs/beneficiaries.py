"""The optional inputs that say who uses a service (actual GEP, ``accounts/actual.py``): a population
raster (persons per pixel), water-use and emission tables. Read here so that ``accounts/`` reads no file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, Problem
from .readers import read_full, read_table

WATER_USE_TABLE = "water_use"
EMISSIONS_TABLE = "emissions"
POPULATION_LAYER = "population"


@dataclass
class BeneficiaryInputs:
    """The catalog's optional beneficiary inputs, read here (``accounts/`` reads no file)."""

    water_use: object = None                  # DataFrame (zone_id, water_use_m3) or None
    emissions: object = None                  # DataFrame (zone_id, medium, load_t) or None
    population: np.ndarray | None = None      # persons per pixel on the run grid (2-D, nodata → 0) or None
    names: tuple[str, ...] = ()               # the inputs present (for the run summary)


def read_beneficiary_inputs(cat, grid) -> BeneficiaryInputs:
    """What the catalog declares of the beneficiary inputs; a negative population is refused."""
    water = read_table(cat, WATER_USE_TABLE) if WATER_USE_TABLE in cat.tables else None
    emis = read_table(cat, EMISSIONS_TABLE) if EMISSIONS_TABLE in cat.tables else None
    pop = None
    if POPULATION_LAYER in cat.layers:
        arr = read_full(cat, POPULATION_LAYER, grid)
        if arr is not None:
            spec = cat.layers[POPULATION_LAYER]
            a = arr.astype("float64")
            nod = ~np.isfinite(a) | ((a == spec.nodata) if spec.nodata is not None else False)
            neg = ~nod & (a < 0)
            if neg.any():
                vals = np.unique(a[neg])[:5]
                raise InputError([Problem("negative-population", str(cat.path_of(spec.path)), POPULATION_LAYER,
                                          f"{int(neg.sum())} pixel(s) have a negative population (e.g. "
                                          f"{', '.join(f'{v:g}' for v in vals)})",
                                          "give persons per pixel (0 or more) and mark missing pixels with the nodata value")])
            pop = np.where(nod, 0.0, a)
    names = tuple(sorted(k for k in (POPULATION_LAYER,) if k in cat.layers)) \
        + tuple(sorted(k for k in (WATER_USE_TABLE, EMISSIONS_TABLE) if k in cat.tables))
    return BeneficiaryInputs(water, emis, pop, names)
