"""The per-pixel result maps: created empty before the compute, written window by window during it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import xarray as xr

from ..grid import Grid
from ..rules import RuleSet
from ..services import SERVICES


class WindowWriter:
    """Writes one chunk of a map into its window of the map's GeoTIFF (NaN → the file's nodata).

    The engine's per-chunk task (:func:`eco_value.accounts.zonal.zonal_pass`) calls it as a hook, so the
    file I/O stays here while the writes ride along in the same pass as the sums. Picklable (path and a
    lock: a ``threading.Lock`` for local threads, a ``distributed.Lock`` on a cluster).

    ``keep_open`` (local threads only): the file is opened once, at the first window, and kept open for
    the pass (the lock serialises the writes; an ``r+`` open and close per window cost ~1.6 ms, 22 maps ×
    ~110 chunks at 10 m); :meth:`close` must then be called before the file is read. Whole 512-px tiles
    are written through, not held in GDAL's block cache (22 open 27 Mpx maps: +27 MB RSS). On a cluster
    the processes share no handle: each window is an open, a write and a close.
    """

    def __init__(self, path: str, lock, keep_open: bool = False):
        self.path = path
        self.lock = lock
        self.keep_open = keep_open
        self._dst = None

    def __getstate__(self):
        return {**self.__dict__, "_dst": None}

    def __call__(self, a, r0: int, c0: int) -> None:
        import numpy as np
        import rasterio

        a = np.asarray(a, dtype=np.float32)
        with self.lock:
            if not self.keep_open:
                with rasterio.open(self.path, "r+") as dst:
                    _write(dst, a, r0, c0)
                return
            if self._dst is None:
                self._dst = rasterio.open(self.path, "r+")
            _write(self._dst, a, r0, c0)

    def close(self) -> None:
        """Close the file kept open (if any): its windows are then on disk."""
        if not self.keep_open:   # nothing held (and a cluster's lock may be gone with its client)
            return
        with self.lock:
            if self._dst is not None:
                dst, self._dst = self._dst, None
                dst.close()


def _write(dst, a, r0: int, c0: int) -> None:
    import numpy as np
    from rasterio.windows import Window

    dst.write(np.where(np.isnan(a), np.float32(dst.nodata), a), 1, window=Window(c0, r0, a.shape[1], a.shape[0]))


def create_map_files(maps: dict[str, xr.DataArray], folder: Path, grid: Grid, run_id: str, rules: RuleSet,
                     scheduler) -> dict[str, tuple]:
    """Create the empty per-pixel map GeoTIFFs (tiled, float32, nodata, tags); name → (map, :class:`WindowWriter`).

    The caller closes every writer (:meth:`WindowWriter.close`) after the compute, also when it failed.

    The single compute writes each chunk into its window (no compression there, so writes keep pace);
    :func:`eco_value.outputs.finalize_rasters` then turns them into ZSTD-compressed COGs.
    """
    import rasterio

    distributed = bool(scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"))
    out = {}
    for name, arr in maps.items():
        path = folder / f"{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                           crs=grid.crs, transform=grid.transform, nodata=-9999.0, tiled=True, blockxsize=512,
                           blockysize=512, sparse_ok=True) as dst:
            dst.update_tags(run_id=run_id, ruleset_hash=rules.content_hash, layer=name, units=units_of(name),
                            note="eco-value result; per-hectare or per-km2 as the name says")
        if distributed:
            from distributed import Lock
            writer = WindowWriter(str(path), Lock(f"eco-value-write-{run_id}-{name}"))
        else:
            writer = WindowWriter(str(path), threading.Lock(), keep_open=True)
        out[name] = (arr, writer)
    return out


def units_of(name: str) -> str:
    if name.endswith("tc_per_ha"):
        return "t C/ha"
    if name.endswith("tco2e_per_ha_yr"):
        return "t CO2e/ha/yr"
    if "value_cny_per_km2" in name or name == "gep_cny_per_km2":
        return "CNY/km2/yr"
    key = name.replace("_quantity_per_km2", "")
    return f"{SERVICES[key].SPEC.quantity_unit}/km2/yr" if key in SERVICES else ""
