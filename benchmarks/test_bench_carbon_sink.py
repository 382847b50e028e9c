"""Carbon sink (stock difference, all pools, land-use change) over a pilot: eco-value's lazy engine vs
a plain single-threaded numpy implementation of the same equations on the same files.

    pytest benchmarks/test_bench_carbon_sink.py --benchmark-only        # 30 m (+10 m with ECO_VALUE_BENCH_10M=1)
"""

from __future__ import annotations

import os
import time

import dask
import numpy as np
import pytest
import rasterio

from conftest import BENCH_DIR
from eco_value.carbon import coefficients, stock_difference
from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.pilot import generate_pilot
from eco_value.inputs.readers import open_layers
from eco_value.rules import load_rules

RULES = load_rules("cn2011-mee2020")
RESOLUTIONS = [30.0] + ([10.0] if os.environ.get("ECO_VALUE_BENCH_10M") else [])
KEYS = ("volume@t1", "forest_type@t1", "land_cover@t1", "volume@t2", "forest_type@t2", "land_cover@t2")


@pytest.fixture(scope="module", params=RESOLUTIONS, ids=lambda r: f"{r:g}m")
def pilot(request):
    d = BENCH_DIR / f"qionglai_{request.param:g}m"
    if not (d / "catalog.toml").exists():
        generate_pilot("qionglai", d, resolution_m=request.param)
    return d


def eco_sink(d) -> float:
    cat = load_catalog(d / "catalog.toml")
    layers, grid = open_layers(cat, keys=list(KEYS))
    out = stock_difference(*(layers[k] for k in KEYS), tuple(cat.catalog.period), coefficients(RULES))
    (s,) = dask.compute((out["sink_tco2e_per_ha_yr"] * grid.pixel_area_ha).sum(), scheduler="threads")
    return float(s)


def numpy_sink(d) -> float:
    from eco_value.inputs.schemes import load_scheme

    c = coefficients(RULES)
    cat = load_catalog(d / "catalog.toml")
    a = {}
    for k in KEYS:
        spec = cat.layers[k]
        with rasterio.open(cat.path_of(spec.path)) as src:
            a[k] = src.read(1)   # categorical layers: product codes → engine ids, as the readers do
            a[k] = load_scheme(spec.scheme).translate(a[k], src.nodata) if spec.scheme else a[k]
            ha = abs(src.transform.a * src.transform.e) / 1e4
    y1, y2 = cat.catalog.period
    valid = (a["land_cover@t1"] != 255) & (a["land_cover@t2"] != 255)
    l1 = np.where(valid, a["land_cover@t1"], 0)
    l2 = np.where(valid, a["land_cover@t2"], 0)

    def bio(v, sp, lc):
        v = np.where(v == -9999.0, 0.0, v).astype(np.float64)
        sp = np.where(sp == 255, 0, sp)
        return v * c.k_vol_tc_per_m3[sp] + c.area_tc_per_ha[sp] + c.class_bio_tc_per_ha[lc]

    b1 = bio(a["volume@t1"], a["forest_type@t1"], l1)
    b2 = bio(a["volume@t2"], a["forest_type@t2"], l2)
    rate = (b2 - b1 + c.class_dom_tc_per_ha[l2] - c.class_dom_tc_per_ha[l1]) / (y2 - y1) \
        + (c.class_soc_tc_per_ha[l2] - c.class_soc_tc_per_ha[l1]) / c.soil_transition_yr
    return float((rate * c.co2_per_c * ha)[valid].sum())


def test_carbon_sink_vs_numpy(benchmark, pilot):
    got = benchmark.pedantic(eco_sink, args=(pilot,), rounds=3, iterations=1, warmup_rounds=1)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        ref = numpy_sink(pilot)
        best = min(best, time.perf_counter() - t)
    assert got == pytest.approx(ref, rel=1e-9)
    benchmark.extra_info.update({"numpy_best_s": best, "ratio_vs_numpy": best / benchmark.stats.stats.min})
