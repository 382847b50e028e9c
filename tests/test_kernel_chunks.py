"""The valuation's per-chunk kernel (issue 17 item 2): results do not depend on the chunk size.

The whole graph of the 90 m pilot (carbon, every service, the GEP Monte Carlo channels, county,
township and parcel sums, input checks) is computed with two chunk sizes that cut the raster
differently; every per-zone sum must agree. The per-pixel numbers are the same whatever the chunking
(the DEM's slope reads a 1-px halo across chunk borders), so only the order of the float64 additions
changes: tolerance 1e-12 of the largest absolute sum of each array (a zone whose sum nearly cancels,
e.g. a carbon sink of gains and losses, is compared at that scale, not at its own).
"""

from __future__ import annotations

import dask
import numpy as np

from eco_value.engine.graph import build
from eco_value.engine.options import RunOptions
from eco_value.inputs.catalog import load_catalog
from eco_value.rules import load_rules

REL = 1e-12


def _sums(pilot_dir, chunk_px: int) -> dict:
    cat = load_catalog(pilot_dir / "catalog.toml")
    opts = RunOptions(chunk_px=chunk_px)
    graph, _ctx = build(cat, load_rules(opts.rules), opts, lambda *_: None)
    (out,) = dask.compute(graph["zones"], scheduler="threads")
    return out


def test_two_chunk_sizes_give_the_same_zone_sums(pilot_dir):
    a, b = _sums(pilot_dir, 96), _sums(pilot_dir, 160)
    kinds = {"county", "township", "parcel"}
    assert kinds <= set(a) and set(a) == set(b)
    assert a["__stats__"] == b["__stats__"]   # input checks: counts, minima and maxima
    n = 0
    for kind in kinds:
        assert set(a[kind]) == set(b[kind])
        for name, x in a[kind].items():
            y = b[kind][name]
            assert x.shape == y.shape, (kind, name)
            scale = float(np.abs(x).max()) if x.size else 0.0
            np.testing.assert_allclose(y, x, rtol=REL, atol=REL * scale, err_msg=f"{kind} {name}")
            n += 1
    county = a["county"]
    assert county["v:soil_conservation"][0] > 0 and county["carbon:sink"][0] != 0   # real numbers compared
    assert n >= 120
