"""Lazy readers: every raster opens as a dask-backed DataArray on the run's one grid.

A layer whose grid differs from the reference layer is warped lazily through a GDAL WarpedVRT with
the resampling its catalog entry declares (validation refuses a mismatch without a declaration).
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import rasterio
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..errors import InputError
from ..grid import Grid
from .catalog import Catalog
from .tables import load_table

DEFAULT_CHUNK_PX = 1024


def reference_grid(cat: Catalog, chunk_px: int = DEFAULT_CHUNK_PX) -> Grid:
    spec = cat.layers[cat.catalog.reference_layer]
    with rasterio.open(cat.path_of(spec.path)) as ds:
        return Grid(crs=ds.crs.to_string(), transform=ds.transform, width=ds.width, height=ds.height,
                    chunk_px=chunk_px)


def open_layer(cat: Catalog, key: str, grid: Grid) -> xr.DataArray:
    spec = cat.layers[key]
    path = cat.path_of(spec.path)
    with rasterio.open(path) as ds:
        same = ds.crs is not None and ds.crs.to_string() == grid.crs and ds.transform == grid.transform \
            and ds.width == grid.width and ds.height == grid.height
        nodata = ds.nodata if ds.nodata is not None else spec.nodata
    if same:
        arr = rioxarray.open_rasterio(path, chunks={"band": 1, **grid.chunks}, lock=False, cache=False)
    else:
        src = rasterio.open(path)
        vrt = WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                        resampling=Resampling[spec.resample or "nearest"], src_nodata=nodata, nodata=nodata)
        arr = rioxarray.open_rasterio(vrt, chunks={"band": 1, **grid.chunks}, lock=False, cache=False)
    arr = arr.sel(band=spec.band, drop=True)
    arr.attrs = {
        "layer": key, "variable": spec.variable, "unit": spec.unit, "nodata": nodata,
        "source_file": str(path), "year": spec.year, "product": spec.product,
    }
    arr.name = key
    return arr


def open_layers(cat: Catalog, chunk_px: int = DEFAULT_CHUNK_PX, keys=None) -> tuple[dict[str, xr.DataArray], Grid]:
    """Open every (or the named) raster layer lazily, aligned on the reference grid."""
    grid = reference_grid(cat, chunk_px)
    keys = list(cat.layers) if keys is None else keys
    return {k: open_layer(cat, k, grid) for k in keys}, grid


def read_vector(cat: Catalog, key: str, crs: str | None = None) -> gpd.GeoDataFrame:
    spec = cat.vectors[key]
    gdf = gpd.read_file(cat.path_of(spec.path), layer=spec.layer)
    if crs is not None and gdf.crs is not None and gdf.crs.to_string() != crs:
        gdf = gdf.to_crs(crs)
    return gdf


def read_table(cat: Catalog, key: str) -> pd.DataFrame:
    """A catalog table, typed and checked as validation checks it (:func:`eco_value.inputs.tables.load_table`)."""
    df, probs = load_table(cat.path_of(cat.tables[key].path), key)
    if probs:
        raise InputError(probs)
    return df
