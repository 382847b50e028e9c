"""Public raster products (CHIRPS, MOD16A2, WorldCover, CLCD, Copernicus DEM) as run layers.

::

    from eco_value.inputs.products import ProductSpec, open_product, to_grid, open_classes

    et = open_product(ProductSpec(path="mod16/*.tif", unit="kg/m2/8d", scale=0.1,
                                  valid_range=(-32767, 32700), fill_values=list(range(32761, 32768)),
                                  aggregate="sum", expected_steps=46))          # annual mm, lazy
    p = open_product(ProductSpec(path="chirps-v2.0.2023.days_p05.nc", variable="precipitation",
                                 unit="mm/d", aggregate="sum", year=2023, expected_steps=365))
    p_on_grid = to_grid(p, grid, "bilinear")
    lc = open_classes("ESA_WorldCover_10m_2021_v200_N30E102_Map.tif", "worldcover", grid)  # type ids

A product is one file (GeoTIFF or NetCDF; a NetCDF's time dimension is the steps) or a list of
files (a glob, or a list: one step per file, in the order given). The values are decoded by what the
spec declares — never silently by the file: stored values in ``fill_values`` become missing; any other
stored value outside ``valid_range`` is refused with its count (an undeclared fill code); then
``value × scale + offset``. A file that declares a scale the spec does not is refused, and so are
decoded values beyond the unit's plausible range (``raster_inputs/product-units.toml``), which is what
an undeclared scale factor looks like. ``aggregate = "sum"`` adds the steps (a pixel missing in any
step is missing in the sum: a partial year is not a year) and converts to the unit's annual unit
(mm/d and kg/m2/8d -> mm); ``"mean"`` averages them. NetCDF is read through xarray (h5netcdf for
NetCDF-4/HDF5, scipy for NetCDF-3); everything stays lazy (dask) until ``to_grid`` or ``compute``.
The validity checks compute a few reductions (counts, min, max) over the product's own pixels.
"""

from __future__ import annotations

import glob as _glob
import tomllib
from pathlib import Path
from typing import Literal

import dask
import dask.array as da
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from pydantic import BaseModel, ConfigDict
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..errors import InputError, Problem
from ..grid import Grid
from ..resources import data_dir
from ..rules.ecosystem import NODATA_ID
from .rasterize import grid_coords
from .schemes import load_scheme


class ProductSpec(BaseModel):
    """How to decode one public product (fields a catalog layer gains; see raster_inputs/README.md)."""

    model_config = ConfigDict(extra="forbid")
    path: str | list[str]
    unit: str
    variable: str | None = None          # NetCDF variable; None: band 1 of a GeoTIFF
    scale: float | None = None
    offset: float = 0.0
    valid_range: tuple[float, float] | None = None   # in stored units
    fill_values: list[float] = []                    # stored codes meaning "no data"
    aggregate: Literal["sum", "mean"] | None = None
    time_dim: str = "time"
    year: int | None = None              # keep this year's steps (a NetCDF with a time coordinate)
    expected_steps: int | None = None    # refuse a year with another number of steps
    crs: str | None = None               # for files without a CRS (CHIRPS NetCDF: EPSG:4326)
    product: str = ""


def load_units() -> dict[str, dict]:
    with open(data_dir("raster_inputs") / "product-units.toml", "rb") as f:
        return tomllib.load(f)["units"]


def _files(spec: ProductSpec) -> list[str]:
    if isinstance(spec.path, list):
        return [str(p) for p in spec.path]
    if any(ch in spec.path for ch in "*?["):
        return sorted(_glob.glob(spec.path))
    return [spec.path]


def _problem(spec: ProductSpec, what: str, fix: str, kind: str = "bad-product") -> InputError:
    files = _files(spec)
    where = files[0] if len(files) == 1 else f"{files[0]} … ({len(files)} files)" if files else str(spec.path)
    return InputError([Problem(kind, where, spec.variable or "band 1", what, fix)])


def _open_raw(spec: ProductSpec) -> tuple[xr.DataArray, float | None]:
    """The stored values with a time dimension (undecoded) and the scale the file itself declares."""
    files = _files(spec)
    if not files or not all(Path(f).exists() for f in files):
        missing = [f for f in files if not Path(f).exists()] or [str(spec.path)]
        raise _problem(spec, f"{len(missing)} file(s) not found, e.g. {missing[0]}", "check the path or glob",
                       "missing-file")
    if len(files) == 1 and Path(files[0]).suffix.lower() in (".nc", ".nc4", ".cdf", ".h5"):
        ds = xr.open_dataset(files[0], chunks={}, mask_and_scale=False, decode_times=True,
                             decode_coords="all")   # keeps the CF grid mapping (spatial_ref): the CRS
        if spec.variable not in ds:
            raise _problem(spec, f"no variable '{spec.variable}' (variables: {', '.join(map(str, ds.data_vars))})",
                           "set variable to the NetCDF variable that holds the data", "missing-variable")
        arr = ds[spec.variable]
        file_scale = arr.attrs.get("scale_factor")
        ren = {d: n for d, n in (("latitude", "y"), ("lat", "y"), ("longitude", "x"), ("lon", "x")) if d in arr.dims}
        arr = arr.rename(ren)
        if spec.time_dim in arr.dims and spec.time_dim != "time":
            arr = arr.rename({spec.time_dim: "time"})
        crs = spec.crs or arr.rio.crs or ds.rio.crs
        if crs is None and set(ren.values()) == {"x", "y"}:
            raise _problem(spec, "the file has latitude/longitude but no CRS",
                           "declare crs = \"EPSG:4326\" for a geographic product")
        arr = arr.rio.write_crs(crs) if crs else arr
    else:
        arr, scales = _stack_files(spec, files)
        file_scale = next(iter(scales)) if scales != {1.0} else None
    return arr, file_scale


def _read_band1(path: str) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def _stack_files(spec: ProductSpec, files: list[str]) -> tuple[xr.DataArray, set]:
    """One step per file, stacked lazily (one delayed read per file); every file must share the first
    file's grid."""
    grids, scales = [], set()
    for f in files:
        with rasterio.open(f) as ds:
            grids.append((ds.crs, ds.transform, ds.width, ds.height, ds.dtypes[0]))
            scales.add(ds.scales[0])
    first = grids[0]
    odd = [f for f, g in zip(files, grids) if g != first]
    if odd:
        raise _problem(spec, f"{len(odd)} file(s) differ from the first in CRS, grid or data type, e.g. {odd[0]}",
                       "give the steps of one product on one grid (one tile, one projection)")
    crs, transform, width, height, dtype = first
    steps = [da.from_delayed(dask.delayed(_read_band1)(f), (height, width), dtype=dtype) for f in files]
    x = transform.c + transform.a * (np.arange(width) + 0.5)
    y = transform.f + transform.e * (np.arange(height) + 0.5)
    # one chunk along time: a time aggregate then works per spatial block, with few tasks
    arr = xr.DataArray(da.stack(steps).rechunk({0: -1}), dims=("time", "y", "x"), coords={"y": y, "x": x})
    if len(files) == 1 and not spec.aggregate:
        arr = arr.isel(time=0, drop=True)
    arr = arr.rio.write_crs(spec.crs or crs).rio.write_transform(transform)
    return arr, scales


def open_product(spec: ProductSpec, *, check: bool = True) -> xr.DataArray:
    """The decoded (and, with ``aggregate``, annual) product on its own grid, lazily; see the module
    docstring for the decoding rules and what is refused."""
    units = load_units()
    if spec.unit not in units:
        raise _problem(spec, f"unit '{spec.unit}' is not a product unit", f"use one of {', '.join(units)}")
    u = units[spec.unit]
    raw, file_scale = _open_raw(spec)
    if file_scale is not None and spec.scale is None:
        raise _problem(spec, f"the file declares a scale factor {file_scale} but the spec declares none",
                       f"declare scale = {file_scale} (and offset, fill_values, valid_range) for this product")
    if spec.year is not None and "time" in raw.dims and np.issubdtype(raw["time"].dtype, np.datetime64):
        raw = raw.sel(time=raw["time"].dt.year == spec.year)
    if spec.aggregate and "time" not in raw.dims:
        raise _problem(spec, "aggregate is set but the product has no time dimension",
                       "give a NetCDF with a time dimension or a list of files")
    n = raw.sizes.get("time", 1)
    if spec.expected_steps is not None and n != spec.expected_steps:
        raise _problem(spec, f"{n} time step(s){f' in {spec.year}' if spec.year else ''}, expected "
                       f"{spec.expected_steps}", "give the complete year (every step), or correct expected_steps")
    data = raw.data.astype("float64")
    fill = da.isin(raw.data, np.asarray(spec.fill_values)) if spec.fill_values else da.zeros_like(data, dtype=bool)
    scale = 1.0 if spec.scale is None else spec.scale
    value = da.where(fill, np.nan, data * scale + spec.offset)
    if check:
        _check(spec, raw, fill, value, u)
    dec = raw.copy(data=value)
    if spec.aggregate == "sum":
        out = dec.sum("time", skipna=False) * float(u["factor"]["value"])
        unit = u["sum_to"]
    elif spec.aggregate == "mean":
        out, unit = dec.mean("time", skipna=False), spec.unit
    else:
        out, unit = dec, spec.unit
    out.attrs = {"unit": unit, "product": spec.product, "steps": n, "scale": scale, "offset": spec.offset,
                 "aggregate": spec.aggregate or "", "source_files": ";".join(_files(spec))}
    return out


def _check(spec: ProductSpec, raw: xr.DataArray, fill, value, u: dict) -> None:
    lo_p, hi_p = u["plausible"]["value"]
    checks = {"vmin": da.nanmin(value), "vmax": da.nanmax(value), "n_valid": (~da.isnan(value)).sum()}
    if spec.valid_range is not None:
        lo, hi = spec.valid_range
        out = ~fill & ((raw.data < lo) | (raw.data > hi))
        checks["n_out"] = out.sum()
    with np.errstate(all="ignore"):
        res = dict(zip(checks, dask.compute(*checks.values())))
    if res.get("n_out", 0):
        lo, hi = spec.valid_range
        vals = raw.data[out].compute()
        codes, counts = np.unique(vals, return_counts=True)
        listed = ", ".join(f"{c:g} ({k}×)" for c, k in list(zip(codes, counts))[:12])
        raise _problem(spec, f"{int(res['n_out'])} stored value(s) outside valid_range [{lo:g}, {hi:g}] that are not "
                       f"declared fill values: {listed}",
                       "add them to fill_values if they are the product's no-data codes, or correct valid_range")
    if res["n_valid"] and (res["vmin"] < lo_p or res["vmax"] > hi_p):
        why = ("no scale is declared: the stored numbers are used as they are, and they are beyond what "
               f"{spec.unit} can be" if spec.scale is None else "the declared scale/offset give values beyond what "
               f"{spec.unit} can be")
        raise _problem(spec, f"decoded values span {res['vmin']:g}..{res['vmax']:g} {spec.unit}, outside the plausible "
                       f"{lo_p:g}..{hi_p:g}; {why}",
                       "declare the product's scale (e.g. MOD16A2 ET: scale = 0.1), offset and fill_values as its "
                       "user guide gives them", "implausible-values")


def _template(grid: Grid) -> xr.DataArray:
    c = grid_coords(grid)
    t = xr.DataArray(np.zeros(grid.shape, dtype="float32"), dims=("y", "x"), coords=c)
    return t.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def to_grid(arr: xr.DataArray, grid: Grid, resampling: str = "bilinear") -> xr.DataArray:
    """A (coarse, aggregated) product warped onto the run grid with the declared resampling. The
    product array is computed here (it is small: one value per product pixel)."""
    src = arr.compute().astype("float64")
    if src.rio.crs is None:
        raise InputError([Problem("missing-crs", arr.attrs.get("source_files", "product"), "product",
                                  "the product has no CRS", "declare crs in the product spec")])
    src = src.rio.write_nodata(np.nan, encoded=False)
    out = src.rio.reproject_match(_template(grid), resampling=Resampling[resampling])
    out = out.assign_coords(grid_coords(grid))
    out.attrs = dict(arr.attrs, resample=resampling)
    return out


def open_classes(path: str | Path, scheme: str, grid: Grid, resample: str = "mode") -> xr.DataArray:
    """A categorical product (WorldCover, CLCD, ...) warped onto ``grid`` (``mode`` by default) and
    crosswalked to ecosystem-type ids (uint8; 255 where the product has no data). Codes the scheme does
    not map are refused with their pixel counts on the grid."""
    sc = load_scheme(scheme, "ecosystem_type")
    with rasterio.open(path) as ds:
        nodata = ds.nodata
        dtype = ds.dtypes[0]
    if not np.issubdtype(np.dtype(dtype), np.integer) or np.dtype(dtype).itemsize > 2:
        raise InputError([Problem("bad-product", str(path), "band 1", f"class codes stored as {dtype}",
                                  "give the product's integer (uint8/uint16) class raster")])
    vrt = WarpedVRT(rasterio.open(path), crs=grid.crs, transform=grid.transform, width=grid.width,
                    height=grid.height, resampling=Resampling[resample], src_nodata=nodata, nodata=nodata)
    codes = rioxarray.open_rasterio(vrt, chunks={"band": 1, **grid.chunks}, lock=False).isel(band=0, drop=True)
    known = np.array(sorted(set(sc.known_codes()) | ({int(nodata)} if nodata is not None else set())))
    bad = ~da.isin(codes.data, known)
    vals = codes.data[bad].compute()
    if vals.size:
        c, k = np.unique(vals, return_counts=True)
        listed = ", ".join(f"'{a}' ({b}×)" for a, b in zip(c, k))
        raise InputError([Problem("unmapped-code", str(path), "band 1",
                                  f"{vals.size} pixel(s) on the run grid have codes that class scheme '{sc.name}' does "
                                  f"not map: {listed}",
                                  f"add each code to {sc.path} or choose the scheme that matches the product")])
    ids = codes.data.map_blocks(lambda b: sc.translate(b, nodata), dtype=np.uint8)
    out = xr.DataArray(ids, dims=("y", "x"), coords=grid_coords(grid), name="land_cover")
    out.attrs = {"variable": "land_cover", "unit": "class", "classes": "ecosystem_types", "scheme": sc.name,
                 "nodata": NODATA_ID, "source_file": str(path), "resample": resample}
    return out
