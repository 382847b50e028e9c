"""Province-scale synthetic runs, generated chunk by chunk on the fly (never held in memory).

Used to show that the engine's memory does not grow with the region: every input layer is a dask
array whose chunks are computed from their position (deterministic), and the pilot run's per-chunk
kernel (carbon, every GEP service, the summed channels) runs on them, summed per rectangular zone in
the same task. One compute; peak memory ≈ chunks in flight × layers, whatever the number of pixels.

    python -m eco_value.scale --px 20000 --chunk 2048      # 400 Mpx
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from .accounts.zonal import ChunkWeights, zonal_pass
from .carbon import coefficients, species_code, volume_species
from .engine.graph import COUNTY_ONLY, HALO_LAYERS, ChunkKernel
from .engine.types import ZoneSums
from .grid import Grid
from .roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
from .rules import load_rules
from .rules.ecosystem import ecosystem_types
from .services import SERVICES

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

    # the land cover of a block, made once for the six layers that derive from it (both land covers,
    # species, volumes): a few blocks kept, the ones in flight (it draws nothing from rng)
    made: OrderedDict = OrderedDict()
    lock = threading.Lock()

    def lulc(r, c, rng, s):
        key = (float(r.flat[0]), float(c.flat[0]), s)
        with lock:
            if key in made:
                return made[key]
        e = 0.5 + 0.5 * np.sin(c / 900.0) * np.cos(r / 1300.0)
        out = np.select([e > 0.85, e > 0.4, e > 0.3, e > 0.05], [T["grassland"], T["forest"], T["shrub"], T["cropland"]],
                        T["impervious"]).astype(np.uint8)
        out.flags.writeable = False
        with lock:
            made[key] = out
            while len(made) > 32:
                made.popitem(last=False)
        return out

    def lulc2(r, c, rng, s):
        a = lulc(r, c, rng, s)
        flip = rng.random(s) < 0.01
        return np.where(flip & (a == T["cropland"]), T["forest"], a)

    def block_index(r, c, kr, kc, n):
        """``(r // 64 * kr + c // 64 * kc) % n`` per pixel, from its row and column terms (small ints)."""
        return (r // 64 * kr % n).astype(np.intp) + (c // 64 * kc % n).astype(np.intp)   # 0 .. 2n-2

    def species(r, c, rng, s):
        n = len(vol_ids)
        by_index = vol_ids[np.arange(2 * n - 1) % n]
        return np.where(lulc(r, c, rng, s) == T["forest"], by_index[block_index(r, c, 1, 1, n)], 0)

    def vol(age_shift):
        # growing stock by age (whole years: a table of the ages, looked up per pixel)
        age = 5 + np.arange(2 * 40 - 1) % 40 + age_shift     # by block_index: 5 + (...) % 40 + shift
        by_index = 300 * (1 - np.exp(-0.06 * age.astype(np.float64))) ** 2

        def f(r, c, rng, s):
            return np.where(lulc(r, c, rng, s) == T["forest"], by_index[block_index(r, c, 7, 13, 40)], 0.0)
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


# no sums by type (the pilot makes them for the county and townships only): for no zone layer here
NO_ZONE = {"": COUNTY_ONLY}


@dataclass
class IdZones:
    """Rectangular zones numbered row-major (``per_side`` × ``per_side``) over an ``n_rows`` × ``n_cols``
    grid: the zone-layer interface of :func:`~eco_value.accounts.zonal.zonal_pass` (``n``, ``part``),
    every pixel wholly in the zone of its position (no polygons, no coverage fractions)."""

    n_rows: int
    n_cols: int
    per_side: int

    @property
    def n(self) -> int:
        return self.per_side * self.per_side

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in range(self.n)]

    def part(self, r0: int, c0: int, h: int, w: int) -> IdZonePart:
        return IdZonePart(self, (r0, c0, h, w))


@dataclass
class IdZonePart:
    zones_of: IdZones
    window: tuple

    @property
    def zones(self) -> np.ndarray:
        return np.arange(self.zones_of.n)

    def weights(self) -> ChunkWeights:
        z, (r0, c0, h, w) = self.zones_of, self.window
        zh, zw = max(z.n_rows // z.per_side, 1), max(z.n_cols // z.per_side, 1)
        rows = np.minimum(np.arange(r0, r0 + h) // zh, z.per_side - 1)[:, None]
        cols = np.minimum(np.arange(c0, c0 + w) // zw, z.per_side - 1)[None, :]
        ids = (rows * z.per_side + cols).ravel().astype(np.int64)
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return ChunkWeights(np.arange(h * w, dtype=np.int64), ids, empty)


def run(n_rows: int, n_cols: int, chunk: int = 2048, zones_per_side: int = 20, threads: int | None = None) -> dict:
    """Carbon and every GEP service on the synthetic region through the pilot's per-chunk kernel
    (:class:`~eco_value.engine.graph.ChunkKernel` in :func:`~eco_value.accounts.zonal.zonal_pass`),
    summed over ``zones_per_side``² rectangular zones; one compute."""
    t0 = time.perf_counter()
    rules = load_rules("cn2011-mee2020")
    layers, grid = synthetic_layers(n_rows, n_cols, chunk)
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
    class_px[int(layers[LAND_COVER_T2].attrs["nodata"])] = 0.0
    kernel = ChunkKernel(grid=grid, rules=rules, tables=tables, coef=coefficients(rules), period=PERIOD,
                         price_year=None, region_class_px=class_px,
                         attrs={k: dict(a.attrs) for k, a in layers.items()}, with_maps=False, by_type=False)
    halos = {k: layers[k] for k in HALO_LAYERS if k in layers}
    zones = {"zone": IdZones(n_rows, n_cols, zones_per_side)}
    sums = zonal_pass(zones, grid, layers, halos, kernel, NO_ZONE)
    with dask.config.set(scheduler="threads", num_workers=threads):
        (res,) = dask.compute(sums)
    zs = ZoneSums("zone", None, "", zones["zone"], res["zone"])
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pixels": n_rows * n_cols, "chunk": chunk, "zones": zs.n, "seconds": dt,
            "mpx_per_s": n_rows * n_cols / dt / 1e6, "peak_rss_mb": peak_mb,
            "gep_total_cny": float(sum(zs.value_cny(k).sum() for k in SERVICES)),
            "sink_tco2e_per_yr": float(zs.carbon_sink_tco2e_per_yr.sum())}


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
