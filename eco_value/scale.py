"""Province-scale synthetic runs, generated chunk by chunk on the fly (never held in memory).

Used to show that the engine's memory does not grow with the region: every input layer is a dask
array whose chunks are computed from their position (deterministic), the carbon engine and the
GEP services run unchanged on them, and zonal sums use a lazily rasterised zone-id grid. One
compute; peak memory ≈ chunks in flight × layers, whatever the number of pixels.

    python -m eco_value.scale --px 20000 --chunk 2048      # 400 Mpx
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from .accounts.zonal import zonal_sums_by_id
from .carbon import coefficients, species_code, stock_difference, volume_species
from .grid import Grid
from .roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
from .rules import load_rules
from .rules.ecosystem import ecosystem_types
from .services import ServiceContext, compute_services

RES_M = 30.0
PERIOD = (2020, 2023)   # inventory years of the synthetic province (t1, t2)


def _field(shape, chunks, fn, dtype):
    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        rows = np.arange(r0, r1, dtype=np.float64)[:, None]
        cols = np.arange(c0, c1, dtype=np.float64)[None, :]
        rng = np.random.default_rng([r0, c0])
        return fn(rows, cols, rng, (r1 - r0, c1 - c0)).astype(dtype)

    return da.map_blocks(block, chunks=da.core.normalize_chunks(chunks, shape), dtype=dtype, meta=np.array((), dtype))


def synthetic_layers(n_rows: int, n_cols: int, chunk: int = 2048) -> tuple[dict[str, xr.DataArray], Grid]:
    shape = (n_rows, n_cols)
    ch = (chunk, chunk)
    grid = Grid("EPSG:32648", Affine(RES_M, 0, 0, 0, -RES_M, n_rows * RES_M), n_cols, n_rows, chunk_px=chunk)
    types = ecosystem_types()   # the synthetic land cover is made directly in engine type ids
    T = {n: types.id(n) for n in ("grassland", "forest", "shrub", "cropland", "impervious")}  # noqa: N806
    vol_ids = np.array([species_code(g) for g in volume_species(load_rules("cn2011-mee2020"))])

    def elev(r, c, rng, s):
        return 500 + 2500 * (0.5 + 0.5 * np.sin(c / 900.0) * np.cos(r / 1300.0)) + rng.normal(0, 20, s)

    def lulc(r, c, rng, s):
        e = 0.5 + 0.5 * np.sin(c / 900.0) * np.cos(r / 1300.0)
        return np.select([e > 0.85, e > 0.4, e > 0.3, e > 0.05], [T["grassland"], T["forest"], T["shrub"], T["cropland"]],
                         T["impervious"]) + 0 * rng.integers(0, 1, s)

    def lulc2(r, c, rng, s):
        a = lulc(r, c, rng, s)
        flip = rng.random(s) < 0.01
        return np.where(flip & (a == T["cropland"]), T["forest"], a)

    def species(r, c, rng, s):
        return np.where(lulc(r, c, rng, s) == T["forest"], vol_ids[((r // 64 + c // 64) % len(vol_ids)).astype(int)], 0)

    def vol(age_shift):
        def f(r, c, rng, s):
            age = 5 + (r // 64 * 7 + c // 64 * 13) % 40 + age_shift
            return np.where(lulc(r, c, rng, s) == T["forest"], 300 * (1 - np.exp(-0.06 * age)) ** 2, 0.0)
        return f

    specs = {
        "dem": (elev, "float32", -9999.0),
        LAND_COVER_T1: (lulc, "uint8", 255), LAND_COVER_T2: (lulc2, "uint8", 255),
        FOREST_TYPE_T1: (species, "uint8", 255), FOREST_TYPE_T2: (species, "uint8", 255),
        VOLUME_T1: (vol(0), "float32", -9999.0), VOLUME_T2: (vol(PERIOD[1] - PERIOD[0]), "float32", -9999.0),
        "precip": (lambda r, c, rng, s: 1000 + 500 * (0.5 + 0.5 * np.sin(c / 900.0)) + rng.normal(0, 10, s), "float32", -9999.0),
        "aet": (lambda r, c, rng, s: 600 + 0 * r + rng.normal(0, 10, s), "float32", -9999.0),
        "erosivity": (lambda r, c, rng, s: 4000 + 0 * r + rng.normal(0, 50, s), "float32", -9999.0),
        "erodibility": (lambda r, c, rng, s: 0.03 + 0 * r + rng.normal(0, 0.001, s), "float32", -9999.0),
        "fvc": (lambda r, c, rng, s: np.clip(0.6 + 0 * r + rng.normal(0, 0.1, s), 0, 1), "float32", -9999.0),
        "bulk_density": (lambda r, c, rng, s: 1.3 + 0 * r + 0 * c, "float32", -9999.0),
    }
    layers = {}
    for k, (fn, dt, nod) in specs.items():
        a = xr.DataArray(_field(shape, ch, fn, dt), dims=("y", "x"))
        a.attrs = {"nodata": nod, "layer": k}
        layers[k] = a
    return layers, grid


SINK = "sink_tco2e_per_yr"   # its own sum names (the benchmark sums by zone id, not through the engine)


def run(n_rows: int, n_cols: int, chunk: int = 2048, zones_per_side: int = 20, threads: int | None = None) -> dict:
    t0 = time.perf_counter()
    rules = load_rules("cn2011-mee2020")
    layers, grid = synthetic_layers(n_rows, n_cols, chunk)
    carbon = stock_difference(layers[VOLUME_T1], layers[FOREST_TYPE_T1], layers[LAND_COVER_T1],
                              layers[VOLUME_T2], layers[FOREST_TYPE_T2], layers[LAND_COVER_T2], PERIOD,
                              coefficients(rules))
    tables = {"provisioning": pd.DataFrame([{"product": "rice", "land_cover": "cropland", "quantity": 1e6, "unit": "t",
                                             "price_cny_per_unit": 2700.0}]),
              "tourism": pd.DataFrame([{"visitors": 1e7, "spending_cny_per_visitor": 300.0}])}
    # region-wide class counts first (a cheap pass over one uint8 layer), so that allocating the
    # provisioning and tourism statistics needs no region-wide reduction inside the main graph
    lc = layers[LAND_COVER_T2].data
    hist = da.map_blocks(lambda c: np.bincount(c.ravel(), minlength=256)[None, None, :], lc, dtype=np.int64,
                         new_axis=2, chunks=(1, 1, 256)).sum(axis=(0, 1))
    (class_px,) = dask.compute(hist)
    class_px = class_px.astype(np.float64)
    class_px[255] = 0.0
    ctx = ServiceContext(layers=layers, grid=grid, rules=rules, year=PERIOD[1], tables=tables,
                         carbon_sink_tco2e_per_ha_yr=carbon["sink_tco2e_per_ha_yr"], region_class_px=class_px)
    services = compute_services(ctx)
    zh, zw = max(n_rows // zones_per_side, 1), max(n_cols // zones_per_side, 1)
    n_z = zones_per_side * zones_per_side
    zid = xr.DataArray(_field((n_rows, n_cols), (chunk, chunk),
                              lambda r, c, rng, s: np.minimum(r // zh, zones_per_side - 1) * zones_per_side
                              + np.minimum(c // zw, zones_per_side - 1), "int32"), dims=("y", "x"))
    values = {f"{k}_cny": r.value_cny for k, r in services.items()}
    values[SINK] = carbon["sink_tco2e_per_ha_yr"] * grid.pixel_area_ha
    sums = zonal_sums_by_id(zid, n_z, values)
    with dask.config.set(scheduler="threads", num_workers=threads):
        (res,) = dask.compute(sums)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pixels": n_rows * n_cols, "chunk": chunk, "zones": n_z, "seconds": dt,
            "mpx_per_s": n_rows * n_cols / dt / 1e6, "peak_rss_mb": peak_mb,
            "gep_total_cny": float(sum(v.sum() for k, v in res.items() if k != SINK)),
            "sink_tco2e_per_yr": float(res[SINK].sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=4000, help="pixels per side")
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--limit-mb", type=float, default=None, help="fail (exit 3) when peak RSS exceeds this")
    a = ap.parse_args(argv)
    out = run(a.px, a.px, a.chunk)
    print(json.dumps(out))
    if a.limit_mb is not None and out["peak_rss_mb"] > a.limit_mb:
        print(f"peak RSS {out['peak_rss_mb']:.0f} MB exceeds the limit {a.limit_mb:.0f} MB", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
