"""Plain single-threaded numpy implementation of the InVEST carbon-stock computation (the baseline)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import rasterio


def carbon_stock_numpy(lulc: str, pools: str, future: str | None = None) -> dict:
    df = pd.read_csv(pools)
    table = np.zeros(256)
    table[df.lucode.to_numpy()] = df[["c_above", "c_below", "c_soil", "c_dead"]].sum(axis=1).to_numpy()
    out = {}
    for key, p in (("current", lulc), ("future", future)):
        if p is None:
            continue
        with rasterio.open(p) as ds:
            a = ds.read(1)
            ha = abs(ds.transform.a * ds.transform.e) / 10_000.0
            nod = ds.nodata
        v = np.take(table, a)
        if nod is not None:
            v[a == nod] = 0.0
        out[key] = float(v.sum(dtype=np.float64)) * ha
    seq = out["future"] - out["current"] if "future" in out else None
    return {"total_stock_mgc": out["current"], "sequestration_mgc": seq}


if __name__ == "__main__":
    import json
    print(json.dumps(carbon_stock_numpy(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)))
