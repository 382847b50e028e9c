"""Plain single-threaded numpy implementation of the InVEST carbon-stock computation (the baseline).

    python numpy_baseline.py CUR POOLS [FUT]                      totals (JSON)
    python numpy_baseline.py CUR POOLS FUT --out DIR [--npv K] [--intermediate]
                                                                  + InVEST 3.20's maps, written as COGs with
                                                                    the same options as eco-value

Reads the whole raster, looks up the pool table with ``np.take``, masks and sums, writes each map
with rasterio's COG driver. The pool table is read with the csv module (no pandas, whose import
alone costs ~0.5 s of a ~1 s run).
"""

from __future__ import annotations

import csv
import sys

import numpy as np
import rasterio

POOLS = ("c_above", "c_below", "c_soil", "c_dead")
COG = dict(driver="COG", compress="ZSTD", level=1, blocksize=512, overviews="NONE")   # = eco-value's maps


def _isnd(a, nodata):
    """numpy.isclose(a, nodata) (pygeoprocessing's float nodata test) in float32, without float64 temporaries."""
    return np.abs(a - np.float32(nodata)) <= np.float32(1e-8 + 1e-5 * abs(nodata))


def _table(pools: str) -> np.ndarray:
    lut = np.full((4, 256), -1.0, dtype=np.float32)
    with open(pools, newline="") as f:
        for r in csv.DictReader(f):
            lut[:, int(r["lucode"])] = [float(r[p]) for p in POOLS]
    return lut


def carbon_stock_numpy(lulc: str, pools: str, future: str | None = None) -> dict:
    lut = _table(pools)
    total = ((lut[0] + lut[1]) + lut[2]) + lut[3]
    out = {}
    for key, p in (("current", lulc), ("future", future)):
        if p is None:
            continue
        with rasterio.open(p) as ds:
            a = ds.read(1)
            ha = abs(ds.transform.a * ds.transform.e) / 10_000.0
            nod = ds.nodata
        v = np.take(total, a)
        ok = v != -1
        if nod is not None:
            ok &= a != nod
        out[key] = float(v.sum(dtype=np.float64, where=ok)) * ha
    seq = out["future"] - out["current"] if "future" in out else None
    return {"total_stock_mgc": out["current"], "sequestration_mgc": seq}


def carbon_maps_numpy(lulc: str, pools: str, future: str, out: str, npv_k: float | None = None,
                      intermediate: bool = False) -> dict:
    """InVEST's maps: c_storage_bas/alt, c_change_bas_alt (t C/ha, nodata -1), npv_alt (nodata float32 max)."""
    import os

    lut = _table(pools)
    total = ((lut[0] + lut[1]) + lut[2]) + lut[3]
    os.makedirs(os.path.join(out, "intermediate_outputs"), exist_ok=True)
    sums = {}
    stor = {}
    prof = None

    def write(name, arr, nodata, sub=""):
        p = dict(prof, dtype="float32", nodata=nodata, **COG)
        with rasterio.open(os.path.join(out, sub, f"{name}.tif"), "w", **p) as d:
            d.write(arr, 1)
        sums[name] = float(arr.sum(dtype=np.float64, where=~_isnd(arr, nodata)))

    for scen, path in (("bas", lulc), ("alt", future)):
        with rasterio.open(path) as ds:
            a = ds.read(1)
            nod = ds.nodata
            prof = dict(width=ds.width, height=ds.height, count=1, crs=ds.crs, transform=ds.transform)
            ha = abs(ds.transform.a * ds.transform.e) / 10_000.0
        bad = a == nod
        if intermediate:
            for k, pool in enumerate(POOLS):
                v = np.take(lut[k], a)
                v[bad] = -1
                write(f"{pool}_{scen}", v, -1.0, "intermediate_outputs")
        s = np.take(total, a)
        s[bad] = -1
        write(f"c_storage_{scen}", s, -1.0)
        stor[scen] = s
    ok = ~_isnd(stor["bas"], -1) & ~_isnd(stor["alt"], -1)
    chg = np.where(ok, stor["alt"] - stor["bas"], np.float32(-1))
    write("c_change_bas_alt", chg, -1.0)
    if npv_k is not None:
        big = float(np.finfo(np.float32).max)
        write("npv_alt", np.where(_isnd(chg, -1), np.float32(big), chg * np.float32(npv_k)), big)
    with open(os.path.join(out, "raster_values_summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Raster", "Total", "Units", "Filename"])
        for n in ("c_storage_bas", "c_storage_alt", "c_change_bas_alt", "npv_alt"):
            if n in sums:
                w.writerow([n, sums[n] * ha, "", f"{n}.tif"])
    return {"total_stock_mgc": sums["c_storage_bas"] * ha, "sequestration_mgc": (sums["c_storage_alt"] - sums["c_storage_bas"]) * ha}


if __name__ == "__main__":
    import json

    args = sys.argv[1:]
    if "--out" in args:
        i = args.index("--out")
        out_dir = args[i + 1]
        k = float(args[args.index("--npv") + 1]) if "--npv" in args else None
        print(json.dumps(carbon_maps_numpy(args[0], args[1], args[2], out_dir, k, "--intermediate" in args)))
    else:
        print(json.dumps(carbon_stock_numpy(args[0], args[1], args[2] if len(args) > 2 else None)))
