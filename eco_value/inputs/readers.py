"""Lazy readers: every raster opens as a dask-backed DataArray on the run's one grid.

A layer whose grid differs from the reference layer is warped lazily through a GDAL WarpedVRT with
the resampling its catalog entry declares (validation refuses a mismatch without a declaration).

A categorical layer (one with a class ``scheme``) is translated from the product's codes to the
engine's ids (ecosystem types or species groups; uint8, nodata 255) chunk by chunk, in the same
task that reads it: the engine only ever sees engine ids. The product's codes stay reachable as
``arr.attrs["codes"].array`` (the same dask chunks) for the value checks that name offending codes.
"""

from __future__ import annotations

import os

import geopandas as gpd
import pandas as pd
import rasterio
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..errors import InputError
from ..grid import Grid
from ..rules.ecosystem import NODATA_ID
from .catalog import Catalog
from .remote import remote_env
from .schemes import load_scheme
from .tables import load_table

DEFAULT_CHUNK_PX = 1024


class SourceCodes:
    """The product's codes behind a translated layer. A plain holder, compared by identity: xarray
    compares attrs when it combines arrays, and comparing the DataArray itself would compute it."""

    __slots__ = ("array",)

    def __init__(self, array: xr.DataArray):
        self.array = array

    def __repr__(self) -> str:
        return f"<product codes of {self.array.name}>"


def reference_grid(cat: Catalog, chunk_px: int = DEFAULT_CHUNK_PX) -> Grid:
    spec = cat.layers[cat.catalog.reference_layer]
    path = cat.path_of(spec.path)
    with remote_env(path), rasterio.open(path) as ds:
        return Grid(crs=ds.crs.to_string(), transform=ds.transform, width=ds.width, height=ds.height,
                    chunk_px=chunk_px)


def open_layer(cat: Catalog, key: str, grid: Grid, raw: bool = False) -> xr.DataArray:
    """One layer on ``grid``; categorical layers in engine ids unless ``raw`` (the product's codes)."""
    spec = cat.layers[key]
    path = cat.path_of(spec.path)
    with remote_env(path):
        return _open_layer(spec, key, path, grid, raw)


def _open_layer(spec, key: str, path, grid: Grid, raw: bool) -> xr.DataArray:
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
    if spec.scheme is None or raw:
        return arr
    return translate_codes(arr, spec.scheme)


def translate_codes(arr: xr.DataArray, scheme_name: str) -> xr.DataArray:
    """Lazy product codes → engine ids (uint8, nodata 255), one lookup per chunk."""
    scheme = load_scheme(scheme_name)
    nod = arr.attrs.get("nodata")
    data = arr.data.map_blocks(scheme.translate, nod, dtype="uint8")
    out = xr.DataArray(data, dims=arr.dims, coords=arr.coords, name=arr.name)
    out.attrs = dict(arr.attrs, nodata=NODATA_ID, source_nodata=nod, scheme=scheme.name,
                     vocabulary=scheme.vocabulary, codes=SourceCodes(arr))
    return out


def read_full(cat: Catalog, key: str, grid: Grid):
    """The whole layer as a numpy array (engine ids for a categorical layer), or None when the file
    is not on ``grid`` (then the caller falls back to a lazy path)."""
    spec = cat.layers.get(key)
    if spec is None:   # provided by a source (inventory, DLTB, product): read lazily instead
        return None
    path = cat.path_of(spec.path)
    with remote_env(path), rasterio.open(path) as src:
        if (src.width, src.height) != (grid.width, grid.height) or src.transform != grid.transform:
            return None
        a = src.read(spec.band)
        nod = src.nodata if src.nodata is not None else spec.nodata
    return load_scheme(spec.scheme).translate(a, nod) if spec.scheme else a


def open_layers(cat: Catalog, chunk_px: int = DEFAULT_CHUNK_PX, keys=None,
                raw: bool = False) -> tuple[dict[str, xr.DataArray], Grid]:
    """Open every (or the named) raster layer lazily, aligned on the reference grid (categorical
    layers in engine ids, or in the product's codes with ``raw``). Layers that ``[sources]`` provide (a
    小班 inventory, DLTB, products; :mod:`eco_value.inputs.sources`) come with them, unless ``raw``."""
    grid = reference_grid(cat, chunk_px)
    wanted = None if keys is None else list(keys)
    keys = [k for k in (cat.layers if wanted is None else wanted) if k in cat.layers]
    out = {k: open_layer(cat, k, grid, raw) for k in keys}
    if cat.sources and not raw:
        from .sources import open_source_layers

        extra = open_source_layers(cat, grid, out)
        out.update({k: v for k, v in extra.items() if wanted is None or k in wanted})
    return out, grid


def read_vector(cat: Catalog, key: str, crs: str | None = None) -> gpd.GeoDataFrame:
    spec = cat.vectors[key]
    gdf = gpd.read_file(os.fspath(cat.path_of(spec.path)), layer=spec.layer)   # a remote one as /vsicurl/…
    if crs is not None and gdf.crs is not None and gdf.crs.to_string() != crs:
        gdf = gdf.to_crs(crs)
    if key == "parcels" and cat.sources:   # a tenure source: each parcel carries its 小班' 林权 records
        from .sources import parcel_tenure

        gdf = parcel_tenure(cat, gdf, spec.id_field)
    return gdf


def read_table(cat: Catalog, key: str) -> pd.DataFrame:
    """A catalog table, typed and checked as validation checks it (:func:`eco_value.inputs.tables.load_table`)."""
    df, probs = load_table(cat.path_of(cat.tables[key].path), key)
    if probs:
        raise InputError(probs)
    return df
