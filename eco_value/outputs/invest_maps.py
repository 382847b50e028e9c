"""Writers of the InVEST-compatible carbon mode: the maps as Cloud-Optimized GeoTIFFs and
``raster_values_summary.csv``, named as InVEST 3.20's Carbon model names them.

Each map is written in one streamed pass (``outputs/cog_stream``): worker threads compress each chunk's
tiles in memory (:meth:`MapSet.encode_group`, zstd tile by tile), one thread appends them in row-major
order to the final COG (:meth:`MapSet.append`); no step holds a whole map and no tile is compressed
twice. The previous two-step writer (uncompressed temporary GeoTIFF, then GDAL's COG driver) cost ~0.2 s of CPU and 64 MB
of temporary disk writes per 16 Mpx map. Codec measured on 16 Mpx class-lookup maps (one core): ZSTD
level 1 without predictor 0.04–0.12 s a map, level 9 0.2–0.4 s for ~10 % smaller files; the
floating-point predictor makes these maps (few exact values repeated) both larger and slower, so it is
not used. Overviews (``overviews=True``) need a second pass with GDAL's COG driver.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from .cog_stream import (Codec, CogStream, cog_header, direct_zstd, encode_tiles, retagged_header, tile_major,
                         zstd_tiles)

BLOCK_PX = 512
CODEC = Codec(compress="ZSTD", level=1, blocksize=BLOCK_PX, predictor=1)
INTERMEDIATE_DIR = "intermediate_outputs"          # where InVEST puts the per-pool maps

# raster_values_summary.csv of InVEST 3.20: label, units (pint's names) of each summarised map
SUMMARY_ROWS = {
    "c_storage_bas": ("Baseline Carbon Storage", "metric_ton"),
    "c_storage_alt": ("Alternate Carbon Storage", "metric_ton"),
    "c_change_bas_alt": ("Change in Carbon Storage", "metric_ton"),
    "npv_alt": ("Net Present Value of Carbon Change", "currency"),
}
UNITS = {"npv_alt": "currency/ha"}                   # every other map: Mg C/ha (t C/ha)


def map_path(out_dir: Path, name: str) -> Path:
    return out_dir / (f"{name}.tif" if name in SUMMARY_ROWS else f"{INTERMEDIATE_DIR}/{name}.tif")


class MapSet:
    """A set of float32 maps on one grid, each a COG written in one pass.

    Use :meth:`windows` (one tile row high, whole tiles wide, row-major); :meth:`encode` a window's maps
    from any thread; :meth:`append` the encoded windows in the order of :meth:`windows` from one thread;
    then :meth:`finish` (or :meth:`discard` on failure)."""

    def __init__(self, out_dir: Path, names_nodata: dict[str, float], *, width: int, height: int, transform, crs,
                 tags: dict[str, str] | None = None, threads: int = 1):
        self.out_dir = Path(out_dir)
        self.width, self.height, self.transform = width, height, transform
        self.names = list(names_nodata)
        self.final = {n: map_path(self.out_dir, n) for n in self.names}
        self.part = {n: p.with_name(f".{p.stem}.part.tif") for n, p in self.final.items()}
        self._streams: dict[str, CogStream] = {}
        self._appended = 0

        def tags_of(n):
            return {"layer": n, "units": UNITS.get(n, "t C/ha"), **(tags or {})}

        def header(n):
            return cog_header(width, height, transform=transform, crs=crs, nodata=names_nodata[n], dtype="float32",
                              tags=tags_of(n), codec=CODEC)
        try:
            # one header from GDAL per nodata value and units; the other maps' headers differ only by the layer name
            first = {}
            for n in self.names:
                first.setdefault((names_nodata[n], UNITS.get(n)), n)
            with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
                headers = dict(zip(first.values(), ex.map(header, first.values())))
            for n in self.names:
                if n not in headers:
                    m = first[(names_nodata[n], UNITS.get(n))]
                    h = retagged_header(headers[m][0], {"layer": m}, {"layer": n})
                    headers[n] = (h, headers[m][1]) if h is not None else header(n)
            for n in self.names:
                self.part[n].parent.mkdir(parents=True, exist_ok=True)
                self._streams[n] = CogStream(self.part[n], *headers[n])
        except BaseException:
            self.discard()
            raise

    def windows(self, max_cols: int) -> list[Window]:
        """Row-major windows one tile row high and at most ``max_cols`` px (whole tiles) wide."""
        cols = max(BLOCK_PX, max_cols // BLOCK_PX * BLOCK_PX)
        return [Window(c, r, min(cols, self.width - c), min(BLOCK_PX, self.height - r))
                for r in range(0, self.height, BLOCK_PX) for c in range(0, self.width, cols)]

    def tile_groups(self, block: np.ndarray) -> list[np.ndarray]:
        """A window's array (of :meth:`windows`) as groups of contiguous tiles (:func:`tile_major`): maps
        computed element-wise from them are compressed by :meth:`encode_group` without a copy."""
        return tile_major(block, BLOCK_PX)

    def encode_group(self, win: Window, maps: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        """Compress one group of tiles (``(k, h, w)`` arrays shaped as :meth:`tile_groups` gives them) of
        the maps, in any thread (zstd and GDAL release the GIL); ``win`` is the chunk's window (for GDAL's
        in-memory file, when the codec is not written by zstd directly)."""
        names = [n for n in self.names if n in maps]
        if direct_zstd(CODEC):
            return {n: zstd_tiles(list(maps[n]), CODEC) for n in names}
        tiles = encode_tiles([np.concatenate(list(maps[n]), axis=1) for n in names], CODEC,
                             window_transform(win, self.transform))
        return dict(zip(names, tiles))

    def encode(self, win: Window, maps: dict[str, np.ndarray]) -> tuple[Window, dict[str, list[bytes]]]:
        """Compress one window's maps (2-D arrays) into their tiles (any thread)."""
        tiles: dict[str, list[bytes]] = {}
        groups = {n: self.tile_groups(a) for n, a in maps.items()}
        for i in range(len(next(iter(groups.values()), []))):
            for n, t in self.encode_group(win, {n: g[i] for n, g in groups.items()}).items():
                tiles.setdefault(n, []).extend(t)
        return win, tiles

    def append(self, encoded: tuple[Window, dict[str, list[bytes]]]) -> None:
        """Append an encoded window to every map (one thread, windows in the order of :meth:`windows`)."""
        _win, tiles = encoded
        if set(tiles) != set(self.names):
            raise ValueError(f"maps missing from the window: {sorted(set(self.names) - set(tiles))}")
        for n, t in tiles.items():
            self._streams[n].append(t)
        self._appended += 1

    def finish(self, threads: int = 1, overviews: bool = False) -> dict[str, Path]:
        """Complete every COG and rename it into place; nothing half-written is left."""
        try:
            for s in self._streams.values():
                s.close()
            if overviews:
                self._add_overviews(threads)
        except BaseException:
            self.discard()
            raise
        for n in self.names:
            os.replace(self.part[n], self.final[n])
        self._streams.clear()
        return dict(self.final)

    def _add_overviews(self, threads: int) -> None:
        """Overviews (average) need the whole map: a second pass through GDAL's COG driver."""
        from rasterio.shutil import copy as rio_copy

        def one(n):
            tmp = self.part[n].with_name(f".{self.final[n].stem}.ovr.tif")
            try:
                rio_copy(self.part[n], tmp, driver="COG", overview_resampling="average", **CODEC.cog_options())
                os.replace(tmp, self.part[n])
            finally:
                tmp.unlink(missing_ok=True)

        with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
            list(ex.map(one, self.names))

    def discard(self) -> None:
        for s in self._streams.values():
            s.abort()
        self._streams.clear()
        for p in self.part.values():
            p.unlink(missing_ok=True)


def write_summary_csv(out_dir: Path, sums: dict[str, float], pixel_area_ha: float) -> Path:
    """InVEST 3.20's ``raster_values_summary.csv``: Raster,Total,Units,Filename, totals = Σ valid values × pixel area."""
    path = Path(out_dir) / "raster_values_summary.csv"
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Raster", "Total", "Units", "Filename"])
        for name, (label, units) in SUMMARY_ROWS.items():
            if name in sums:
                w.writerow([label, sums[name] * pixel_area_ha, units, f"{name}.tif"])
    os.replace(tmp, path)
    return path
