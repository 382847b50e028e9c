"""Polygons -> a lazy raster on the run grid, one dask chunk at a time.

Rule (stated once, used by every vector input): **centre of pixel** — a pixel takes the value of
the polygon that contains its centre (``rasterio.features.rasterize`` with ``all_touched=False``);
pixels whose centre is in no polygon get ``fill``. Where polygons overlap, the one later in the frame
wins (callers sort by id, so the result does not depend on file order). Each chunk rasterises only
the polygons whose bounds meet it (spatial index), so memory follows the chunk, not the county.

A source that gives several layers (a 小班 inventory: species group, volume, stand age) is burnt ONCE per
chunk as the row number of the polygon each pixel takes (:func:`rasterize_rows`); each layer is then a
lookup of its column by that row (:func:`take_rows`), so the layers share one rasterisation per chunk.

The area of a class on the raster therefore differs from the polygons' own area by the boundary
pixels: at most about half a pixel along each polygon edge (``perimeter × res / 2``).
"""

from __future__ import annotations

import uuid

import dask.array as da
import geopandas as gpd
import numpy as np
import xarray as xr
from rasterio.features import rasterize
from rasterio.windows import Window, bounds as window_bounds
from rasterio.windows import transform as window_transform
from shapely.geometry import box

from ..grid import Grid


def grid_coords(grid: Grid) -> dict[str, np.ndarray]:
    t = grid.transform
    x = t.c + t.a * (np.arange(grid.width) + 0.5)
    y = t.f + t.e * (np.arange(grid.height) + 0.5)
    return {"y": y, "x": x}


def rasterize_column(gdf: gpd.GeoDataFrame, column: str, grid: Grid, *, fill=0, dtype="float64",
                     name: str | None = None) -> xr.DataArray:
    """The values of ``column`` burnt onto ``grid`` (centre-of-pixel rule), as a lazy DataArray."""
    if gdf.crs is not None and gdf.crs.to_string() != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    geoms = gdf.geometry.values
    values = gdf[column].to_numpy()
    sindex = gdf.sindex
    chunks = da.core.normalize_chunks((grid.chunk_px, grid.chunk_px), grid.shape)

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        win = Window(c0, r0, c1 - c0, r1 - r0)
        out = np.full((r1 - r0, c1 - c0), fill, dtype=dtype)
        hits = sindex.query(box(*window_bounds(win, grid.transform)))
        if len(hits):
            hits = np.sort(hits)
            shapes = [(geoms[i], values[i]) for i in hits if not _isnan(values[i])]
            if shapes:
                rasterize(shapes, out=out, transform=window_transform(win, grid.transform), all_touched=False)
        return out

    # named, not tokenised: dask would otherwise pickle the closure (every polygon) to hash it
    arr = da.map_blocks(block, chunks=chunks, dtype=dtype, meta=np.empty((0, 0), dtype=dtype),
                        name=f"rasterize-{column}-{uuid.uuid4().hex}")
    out = xr.DataArray(arr, dims=("y", "x"), coords=grid_coords(grid), name=name or column)
    out.attrs = {"rule": "centre of pixel (rasterio rasterize, all_touched=False)", "fill": fill}
    return out


def _isnan(v) -> bool:
    try:
        return bool(np.isnan(v))
    except TypeError:
        return v is None


NO_ROW = -1   # rasterize_rows: a pixel whose centre is in no polygon


def rasterize_rows(gdf: gpd.GeoDataFrame, grid: Grid) -> xr.DataArray:
    """The row number (0 … n-1, int32; :data:`NO_ROW` outside every polygon) of the polygon each pixel takes
    by the centre-of-pixel rule, lazily: burnt once per chunk for all the layers of one source."""
    rows = gpd.GeoDataFrame({"_row": np.arange(len(gdf), dtype=np.int32)}, geometry=gdf.geometry.values, crs=gdf.crs)
    return rasterize_column(rows, "_row", grid, fill=NO_ROW, dtype="int32", name="rows")


def take_rows(rows: xr.DataArray, values, fill, dtype, name: str) -> xr.DataArray:
    """``values[row]`` per pixel of a :func:`rasterize_rows` raster, ``fill`` where no polygon (values
    must hold no NaN: a NaN polygon would burn nothing under :func:`rasterize_column`)."""
    ext = np.append(np.asarray(values, dtype=dtype), np.asarray(fill, dtype=dtype))   # ext[-1] = fill for NO_ROW

    def look(block):
        return ext[block]

    arr = rows.data.map_blocks(look, dtype=ext.dtype, meta=np.empty((0, 0), dtype=ext.dtype),
                               name=f"take-{name}-{uuid.uuid4().hex}")
    out = xr.DataArray(arr, dims=rows.dims, coords=rows.coords, name=name)
    out.attrs = dict(rows.attrs, fill=fill)
    return out
