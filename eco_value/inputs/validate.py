"""Validation that refuses bad data before any result is stored.

Two stages, both collecting every problem rather than stopping at the first:

1. :func:`check_structure` (no pixel read): the catalog's period and reference layer; every layer and
   table the selected services declare in their ``SPEC`` (:func:`check_declared_inputs`); files exist,
   are files and open, are not truncated, have the declared band, a CRS that matches or a declared
   resampling, overlap the region, declare nodata and a known unit; vector layers open, have
   features, valid geometries and unique ids; every table is read as the run reads it and checked
   against the limits of ``raster_inputs/validation.toml`` (columns, types, signs, units, ranges).
2. :func:`layer_checks` gives, per layer, a function of one raster chunk: nodata-like pixels inside
   the region (NaN, ±inf, the declared nodata, common fill codes) by kind, and min/max or unknown
   class codes. The pipeline evaluates them in the same single ``dask.compute`` as the valuation
   (``eco-value validate`` with :func:`compute_checks`); :func:`problems_from_stats` turns them into
   problems (refusals) and :func:`warnings_from_stats` into warnings (nodata below the limit).
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from ..errors import Problem
from ..grid import Grid
from ..units import KNOWN_UNITS, is_known
from .catalog import REQUIRED_LAYERS, REQUIRED_TABLES, REQUIRED_VECTORS, Catalog
from .classes import SCHEMES
from .limits import load_limits
from .remote import display_path, is_remote, remote_env, remote_problems
from .tables import load_table

M2_PER_KM2 = 1e6  # unit conversion

# Physically possible ranges per variable (sanity bounds for refusing broken inputs, not parameters
# of any method): e.g. no place on Earth gets more than ~12,000 mm of rain a year (Cherrapunji/
# Mawsynram), and a stand above 2,000 m3/ha of growing stock does not exist outside a few redwood groves.
PHYSICAL_RANGE: dict[str, tuple[float, float, str]] = {
    "precipitation": (0.0, 15000.0, "mm"),
    "actual_evapotranspiration": (0.0, 3000.0, "mm"),
    "growing_stock_volume": (0.0, 2000.0, "m3/ha"),
    "elevation": (-450.0, 8900.0, "m"),
    "stand_age": (0.0, 1000.0, "yr"),
    "rainfall_erosivity": (0.0, 60000.0, "MJ mm/(ha h yr)"),
    "soil_erodibility": (0.0, 0.2, "t ha h/(ha MJ mm)"),
    "vegetation_cover": (0.0, 1.0, "fraction"),
    "soil_bulk_density": (0.1, 2.7, "g/cm3"),
}


def _truncated(ds: rasterio.DatasetReader, file_size: int) -> str | None:
    """Return a message when any TIFF block lies beyond the end of the file."""
    if ds.driver != "GTiff":
        return None
    bw, bh = ds.block_shapes[0][1], ds.block_shapes[0][0]
    nbx, nby = math.ceil(ds.width / bw), math.ceil(ds.height / bh)
    for bidx in range(1, ds.count + 1):
        for by in range(nby):
            for bx in range(nbx):
                off = ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=bidx)
                size = ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=bidx)
                if off is None or size is None:
                    continue
                if int(off) + int(size) > file_size:
                    return (f"the file is truncated: block ({bx},{by}) of band {bidx} ends at byte "
                            f"{int(off) + int(size):,} but the file has {file_size:,} bytes")
    return None


def check_declared_inputs(cat: Catalog, services=()) -> list[Problem]:
    """Every layer and table the selected services declare in their ``SPEC`` is in the catalog.

    ``services``: the selected services' specs (``services.ServiceSpec``: ``key``, ``layers`` with
    ``key`` and ``unit``, ``tables``), passed in by the caller so that ``inputs/`` does not import the
    engine. One problem per missing layer or table, naming every service that reads it.
    """
    from .sources import provided_layers

    src = str(cat.source or "catalog.toml")
    provided = provided_layers(cat)
    layers: dict[str, tuple[str, list[str]]] = {}   # missing key -> (unit, services)
    tables: dict[str, list[str]] = {}
    for spec in services:
        for lay in spec.layers:
            if lay.key not in cat.layers and lay.key not in provided:
                layers.setdefault(lay.key, (lay.unit, []))[1].append(spec.key)
        for t in spec.tables:
            if t not in cat.tables:
                tables.setdefault(t, []).append(spec.key)

    def who(keys):
        return "service" + ("s " if len(keys) > 1 else " ") + ", ".join(f"'{k}'" for k in keys)

    probs = [Problem("missing-layer", src, key,
                     f"{who(svcs)} of the rule set read{'' if len(svcs) > 1 else 's'} layer '{key}' [{unit}] "
                     "(declared in the service's SPEC), but the catalog has no such layer",
                     f"add a [layers.{_toml_key(key)}] entry pointing at a raster in {unit} (or a [sources] entry that "
                     f"gives it), or drop {', '.join(repr(k) for k in svcs)} from the rule set's [ruleset] services")
             for key, (unit, svcs) in layers.items()]
    probs += [Problem("missing-layer", src, key,
                      f"{who(svcs)} of the rule set read{'' if len(svcs) > 1 else 's'} table '{key}' "
                      "(declared in the service's SPEC), but the catalog has no such table",
                      f"add a [tables.{key}] entry pointing at the CSV, or drop {', '.join(repr(k) for k in svcs)} "
                      "from the rule set's [ruleset] services")
              for key, svcs in tables.items()]
    return probs


def _toml_key(key: str) -> str:
    """A layer key as written in a TOML header: bare if it can be, else quoted (``"land_cover@t2"``)."""
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else f'"{key}"'


def check_structure(cat: Catalog, require_all: bool = True, services=()) -> list[Problem]:
    """Check every file of the catalog without reading pixels; return all problems found.

    ``services``: the specs of the services the rule set selects; a layer or table one of them
    declares and the catalog lacks is reported naming the service (:func:`check_declared_inputs`).
    """
    src = str(cat.source or "catalog.toml")
    from .sources import provided_layers

    probs: list[Problem] = check_declared_inputs(cat, services)
    named = {p.layer for p in probs}
    provided = provided_layers(cat)
    if require_all:
        for key, var in REQUIRED_LAYERS.items():
            if key not in cat.layers and key not in provided and key not in named:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no layer '{key}' ({var})",
                                     f"add a [layers.{key}] entry pointing at a {var} raster"))
        for key in REQUIRED_VECTORS:
            if key not in cat.vectors:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no vector layer '{key}'",
                                     f"add a [vectors.{key}] entry"))
        for key in REQUIRED_TABLES:
            if key not in cat.tables and key not in named:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no table '{key}'",
                                     f"add a [tables.{key}] entry"))
    probs += _check_catalog_meta(cat, src)
    try:
        target_crs = CRS.from_user_input(cat.catalog.crs)
    except Exception:
        probs.append(Problem("bad-crs", src, "catalog.crs", f"'{cat.catalog.crs}' is not a CRS",
                             "use an EPSG code such as EPSG:32648"))
        target_crs = None
    region_bounds = _region_bounds(cat, probs)
    ref_key = cat.catalog.reference_layer
    ref_grid = None
    for key, spec in cat.layers.items():
        path = cat.path_of(spec.path)
        f = display_path(path)   # a remote one as its URL, credentials masked
        if not is_known(spec.unit):
            probs.append(Problem("unknown-unit", f, key, f"unit '{spec.unit}' is not known",
                                 f"use one of: {', '.join(sorted(KNOWN_UNITS))}"))
        if spec.classes is not None and spec.classes not in SCHEMES:
            probs.append(Problem("unknown-class-scheme", f, key, f"class scheme '{spec.classes}' is not known",
                                 f"use one of {sorted(SCHEMES)}"))
        if is_remote(path) and _remote_problems(path, key, probs):
            continue
        if not path.exists():
            probs.append(Problem("missing-file", f, key, "the file does not exist",
                                 "check the path in catalog.toml (relative to the catalog) or regenerate the data"))
            continue
        if not path.is_file():
            probs.append(Problem("not-a-file", f, key, "the path is a folder (or a device), not a raster file",
                                 "point the catalog entry at the GeoTIFF file itself"))
            continue
        try:
            with remote_env(path), rasterio.open(path) as ds:
                trunc = _truncated(ds, path.stat().st_size)
                if trunc:
                    probs.append(Problem("truncated", f, key, trunc, "copy or download the file again"))
                    continue
                if not 1 <= spec.band <= ds.count:
                    probs.append(Problem("missing-band", f, key,
                                         f"band {spec.band} is declared but the file has {ds.count} band(s), "
                                         f"numbered 1..{ds.count}",
                                         f"set `band` to 1..{ds.count} in [layers.{key}] (or remove it: the default is band 1)"))
                    continue
                if ds.crs is None:
                    probs.append(Problem("no-crs", f, key, "the raster has no coordinate reference system",
                                         f"assign one, e.g. `gdal_edit.py -a_srs {cat.catalog.crs} {path.name}`"))
                elif target_crs is not None and ds.crs != target_crs and spec.resample is None:
                    probs.append(Problem("crs-mismatch", f, key,
                                         f"CRS {ds.crs.to_string()} differs from the catalog's {cat.catalog.crs}",
                                         "reproject the file, or declare `resample = \"nearest\"` (classes) or "
                                         "`\"bilinear\"` (continuous) in its catalog entry"))
                if ds.nodata is None and spec.nodata is None:
                    probs.append(Problem("no-nodata", f, key,
                                         "no nodata value is set in the file or the catalog, so gaps would be summed as data",
                                         "set one with `gdal_edit.py -a_nodata VALUE` or add `nodata = VALUE` to the catalog entry"))
                elif ds.nodata is not None and spec.nodata is not None and not _same(ds.nodata, spec.nodata):
                    probs.append(Problem("nodata-mismatch", f, key,
                                         f"the file's nodata {ds.nodata} differs from the catalog's {spec.nodata}",
                                         "make them agree"))
                if ds.crs is not None and region_bounds is not None and target_crs is not None:
                    b = ds.bounds
                    if ds.crs != target_crs:
                        from rasterio.warp import transform_bounds
                        b = transform_bounds(ds.crs, target_crs, *b)
                    if not _overlaps(b, region_bounds):
                        probs.append(Problem("no-overlap", f, key,
                                             f"the raster's extent {tuple(round(v) for v in b)} does not overlap the region "
                                             f"{tuple(round(v) for v in region_bounds)}",
                                             "use a raster that covers the region, or check its CRS"))
                grid = (ds.crs, ds.transform, ds.width, ds.height)
                if key == ref_key:
                    ref_grid = grid
                elif ref_grid is not None and ds.crs == ref_grid[0] and grid != ref_grid and spec.resample is None:
                    probs.append(Problem("grid-mismatch", f, key,
                                         "the grid (origin, resolution or size) differs from the reference layer "
                                         f"'{ref_key}'", "resample it to the reference grid, or declare `resample` in the catalog"))
        except RasterioIOError as exc:
            probs.append(Problem("unreadable", f, key, f"GDAL cannot read it as a raster ({exc})",
                                 "check that it is a GeoTIFF/COG or NetCDF and not damaged; copy it again"))
    # second pass for grids when the reference layer came after others
    if ref_grid is not None:
        for key, spec in cat.layers.items():
            path = cat.path_of(spec.path)
            if key == ref_key or spec.resample is not None or not path.exists():
                continue
            if any(p.layer == key for p in probs):
                continue
            try:
                with rasterio.open(path) as ds:
                    if ds.crs == ref_grid[0] and (ds.crs, ds.transform, ds.width, ds.height) != ref_grid:
                        probs.append(Problem("grid-mismatch", str(path), key,
                                             f"the grid differs from the reference layer '{ref_key}'",
                                             "resample it to the reference grid, or declare `resample` in the catalog"))
            except RasterioIOError:
                pass
    probs += _check_vectors(cat)
    probs = _dedupe(probs)
    region_km2 = _region_area_km2(cat, target_crs)
    limits = load_limits()
    for key, spec in cat.tables.items():   # every table the run reads, against the limits kept as data
        if is_remote(spec.path):
            probs.append(Problem("remote-table", display_path(cat.path_of(spec.path)), key,
                                 "a table cannot be remote (remote paths are read through GDAL, tables are not)",
                                 "download the CSV and point the catalog at the local copy"))
            continue
        _df, table_probs = load_table(cat.path_of(spec.path), key, limits, region_km2)
        probs += table_probs
    return probs


def _remote_problems(path, key: str, probs: list[Problem]) -> bool:
    """Adds the problems of a remote input (unreachable, 404, no range support); True if there are any."""
    found = remote_problems(path, key)
    probs += found
    return bool(found)


def _check_catalog_meta(cat: Catalog, src: str) -> list[Problem]:
    probs = []
    y1, y2 = cat.catalog.period
    if y2 <= y1:
        probs.append(Problem("bad-period", src, "catalog.period",
                             f"the period [{y1}, {y2}] does not run forward: the stock-difference method needs two "
                             "inventory years, the second later than the first",
                             "set `period = [FIRST, SECOND]` to the years of the two inventories, FIRST < SECOND "
                             "(e.g. [2020, 2023])"))
    ref = cat.catalog.reference_layer
    if ref not in cat.layers:
        probs.append(Problem("bad-reference-layer", src, "catalog.reference_layer",
                             f"'{ref}' is not a raster layer of the catalog (its grid would be the run's grid)",
                             f"set reference_layer to one of the [layers.*] keys: {', '.join(cat.layers)} "
                             "(usually the first land cover, lulc_2020)"))
    return probs


def _region_area_km2(cat: Catalog, target_crs) -> float | None:
    """Area of the boundary layer in km² (in the catalog's projected CRS); None if it cannot be read."""
    spec = cat.vectors.get("boundary")
    if spec is None or target_crs is None or not cat.path_of(spec.path).is_file():
        return None
    try:
        import pyogrio

        gdf = pyogrio.read_dataframe(cat.path_of(spec.path), layer=spec.layer)
        if gdf.crs is None or len(gdf) == 0:
            return None
        gdf = gdf.to_crs(target_crs if target_crs.is_projected else gdf.estimate_utm_crs())   # areas in m²
        return float(gdf.geometry.area.sum()) / M2_PER_KM2
    except Exception:  # noqa: BLE001 - the boundary's own problem is reported by _check_vectors
        return None


def _dedupe(probs: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in probs:
        k = (p.kind, p.file, p.layer)
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return float(a) == float(b)


def _overlaps(a, b) -> bool:
    return not (a[2] <= b[0] or a[0] >= b[2] or a[3] <= b[1] or a[1] >= b[3])


def _region_bounds(cat: Catalog, probs: list[Problem]):
    spec = cat.vectors.get("boundary")
    if spec is None:
        return None
    path = cat.path_of(spec.path)
    if not path.exists():
        return None
    try:
        import pyogrio
        info = pyogrio.read_info(path, layer=spec.layer)
        return tuple(info["total_bounds"])
    except Exception:
        return None


def _check_vectors(cat: Catalog) -> list[Problem]:
    import pyogrio
    import shapely

    probs: list[Problem] = []
    for key, spec in cat.vectors.items():
        path = cat.path_of(spec.path)
        f = display_path(path)   # a remote one as its URL, credentials masked
        if is_remote(path) and _remote_problems(path, key, probs):
            continue
        if not path.exists():
            probs.append(Problem("missing-file", f, key, "the vector file does not exist",
                                 "check the path in catalog.toml"))
            continue
        try:
            gdf = pyogrio.read_dataframe(path, layer=spec.layer)
        except Exception as exc:
            probs.append(Problem("unreadable", f, key, f"GDAL/OGR cannot read it ({exc})",
                                 "check that it is a GeoPackage, GeoJSON or Shapefile and the layer name is right"))
            continue
        if len(gdf) == 0:
            probs.append(Problem("empty-layer", f, key,
                                 f"the layer{f' {spec.layer!r}' if spec.layer else ''} has no features",
                                 "export the features again, or point `layer` at the layer of the file that holds them"))
            continue
        if gdf.crs is None:
            probs.append(Problem("no-crs", f, key, "the vector layer has no CRS", "assign one in QGIS or with ogr2ogr -a_srs"))
        if spec.id_field not in gdf.columns:
            probs.append(Problem("missing-field", f, key, f"no id field '{spec.id_field}'",
                                 f"add the field or set id_field to one of {list(gdf.columns)}"))
        else:
            dup = gdf[spec.id_field][gdf[spec.id_field].duplicated()].astype(str).unique()
            if len(dup):
                probs.append(Problem("duplicate-id", f, key,
                                     f"{len(dup)} duplicate {spec.id_field} value(s), e.g. {', '.join(dup[:5])}",
                                     "give every feature a unique id"))
        probs += _id_problems(gdf, f, key, [spec.id_field] + (["holder_id"] if key == "parcels" else []))
        geoms = gdf.geometry.values
        bad = ~shapely.is_valid(geoms) | shapely.is_missing(geoms)
        if bad.any():
            ids = gdf[spec.id_field][bad].astype(str).tolist()[:5] if spec.id_field in gdf.columns else []
            reason = shapely.is_valid_reason(geoms[bad][0]) if not shapely.is_missing(geoms[bad][0]) else "missing geometry"
            probs.append(Problem("invalid-geometry", f, key,
                                 f"{int(bad.sum())} invalid geometr(ies) (first: {reason}; ids {ids})",
                                 "repair them (QGIS 'Fix geometries' or shapely.make_valid)"))
    return probs


def _id_problems(gdf, f: str, key: str, fields: list[str]) -> list[Problem]:
    """Ids that cannot go into records and CSVs (empty, control characters, leading = + - @): one problem per field."""
    from ..ids import ID_FIX, id_problem

    parts, bad_fields = [], []
    for field in fields:
        if field not in gdf.columns:
            continue
        bad = [(v, why) for v in gdf[field].tolist() if (why := id_problem(v))]
        if bad:
            eg = "; ".join(f"{'' if v is None else str(v)!r} {why}" for v, why in bad[:5])
            parts.append(f"{len(bad)} {field} value(s) unusable as ids (e.g. {eg})")
            bad_fields.append(field)
    if not parts:
        return []
    return [Problem("bad-id", f, key, "; ".join(parts), f"correct {' and '.join(bad_fields)}: {ID_FIX}")]


# ------------------------------------------------------------------------------------------------
# value checks: one function per raster chunk, merged; run lazily (here, or inside the run's one pass)

GAP_KINDS = ("nan", "inf", "declared", "fill")


def region_mask(geometries, grid: Grid, like: xr.DataArray) -> xr.DataArray:
    """Lazy boolean raster of the pixels whose centre lies inside the region, chunked like ``like``.

    Each chunk is rasterised on its own (no grid-sized array is ever built), so this works for a
    province as for a county.
    """
    from affine import Affine
    from rasterio.features import rasterize

    shapes = [(g, 1) for g in geometries if g is not None and not g.is_empty]
    transform = grid.transform

    def block(block_info=None):
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        if not shapes:
            return np.zeros((r1 - r0, c1 - c0), bool)
        return rasterize(shapes, out_shape=(r1 - r0, c1 - c0), transform=transform * Affine.translation(c0, r0),
                         fill=0, dtype="uint8").astype(bool)

    data = da.map_blocks(block, chunks=like.data.chunks, dtype=bool, meta=np.empty((0, 0), bool))
    return xr.DataArray(data, dims=like.dims, coords=like.coords, name="region")


def _representable(codes, dtype) -> np.ndarray:
    """The fill codes a raster of ``dtype`` can hold exactly (e.g. none of them in uint8)."""
    dtype = np.dtype(dtype)
    out = []
    for c in codes:
        if dtype.kind == "f":
            if float(dtype.type(c)) == c:
                out.append(c)
        elif dtype.kind in "iu" and float(c).is_integer() and np.iinfo(dtype).min <= c <= np.iinfo(dtype).max:
            out.append(c)
    return np.array(out, dtype=dtype)


def missing(a: xr.DataArray, fill_codes=None) -> xr.DataArray:
    """Pixels of layer ``a`` that hold no data, as :func:`check_block` counts them: NaN, ±inf, the
    declared nodata (``attrs["nodata"]``) and the fill codes of ``raster_inputs/validation.toml``
    that the layer's type can hold. Lazy on dask-backed layers, at once on numpy-backed ones."""
    fill = load_limits().fill_codes if fill_codes is None else fill_codes
    nodata = a.attrs.get("nodata")
    out = xr.zeros_like(a, dtype=bool)
    if a.dtype.kind == "f":
        out = out | ~np.isfinite(a)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        out = out | (a == nodata)
    codes = _representable(fill, a.dtype)
    if codes.size:
        out = out | a.isin(codes)
    return out


def missing_any(layers: dict[str, xr.DataArray], keys, cache: dict | None = None) -> xr.DataArray | bool:
    """Pixels where any of the layers ``keys`` (those present in ``layers``) holds no data (:func:`missing`);
    ``cache`` (layer key → mask) keeps each layer's mask for the next call."""
    cache = {} if cache is None else cache
    out = False
    for k in keys:
        if k in layers:
            if k not in cache:
                cache[k] = missing(layers[k])
            out = cache[k] | out
    return out


def check_block(a, region, *, nodata, fill_codes, known, ranged) -> dict:
    """Statistics of one chunk of one layer: nodata-like pixels inside the region by kind, then the
    min/max (continuous layer) or the codes outside the scheme (class layer) of the other pixels."""
    a = np.asarray(a)
    region = np.asarray(region, dtype=bool)
    none = np.zeros(a.shape, bool)
    is_float = a.dtype.kind == "f"
    nan = np.isnan(a) if is_float else none
    inf = np.isinf(a) if is_float else none
    declared = none if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else (a == nodata)
    codes = _representable(fill_codes, a.dtype)
    fill = (np.isin(a, codes) & ~declared) if codes.size else none
    gap = nan | inf | declared | fill
    out = {"region_px": int(np.count_nonzero(region))}   # count_nonzero: ~5x a bool sum
    for k, m in zip(GAP_KINDS, (nan, inf, declared, fill)):
        out[k] = 0 if m is none else int(np.count_nonzero(m & region))
    fr = fill & region
    out["fill_example"] = float(a[fr].max()) if fr.any() else -math.inf
    valid = ~gap
    if known is not None:
        unk = valid & ~np.isin(a, known)
        out["unknown"] = int(np.count_nonzero(unk))
        out["unknown_example"] = int(a[unk].max()) if unk.any() else -1
    elif ranged:
        v = a[valid].astype(np.float64)
        out["min"] = float(v.min()) if v.size else math.inf
        out["max"] = float(v.max()) if v.size else -math.inf
    return out


def merge_checks(a: dict, b: dict) -> dict:
    """Merge two chunks' statistics: minima, maxima (and examples) by min/max, counts by sum."""
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif k == "min":
            out[k] = min(out[k], v)
        elif k == "max" or k.endswith("_example"):
            out[k] = max(out[k], v)
        else:
            out[k] = out[k] + v
    return out


def layer_checks(layers: dict[str, xr.DataArray], cat: Catalog, region: xr.DataArray) -> dict[str, tuple]:
    """Per layer ``(block function, merge function, (layer, region mask))``: what the value checks
    need, for :func:`compute_checks` or for the run's single pass (``zonal_sums_many(block_stats=...)``)."""
    fill = load_limits().fill_codes
    out = {}
    for key, arr in layers.items():
        if key not in cat.layers:   # from [sources]: checked by their readers (check_sources)
            continue
        spec = cat.layers[key]
        known = np.array(sorted(SCHEMES[spec.scheme])) if spec.scheme in SCHEMES else None
        nodata = arr.attrs.get("nodata")
        if "codes" in arr.attrs:   # a translated layer: check the product's own codes (same chunks)
            arr, nodata = arr.attrs["codes"].array, arr.attrs.get("source_nodata")
        fn = partial(check_block, nodata=nodata, fill_codes=fill, known=known,
                     ranged=known is None and spec.variable in PHYSICAL_RANGE)
        out[key] = (fn, merge_checks, (arr, region))
    return out


def compute_checks(checks: dict[str, tuple]) -> dict[str, dict]:
    """Evaluate :func:`layer_checks` chunk by chunk (a tree of small tasks; memory stays flat)."""
    import dask

    tasks = {}
    for key, (fn, merge, arrays) in checks.items():
        blocks = [a.data.rechunk(arrays[0].data.chunks).to_delayed().ravel() for a in arrays]
        parts = [dask.delayed(fn)(*bs) for bs in zip(*blocks)]
        while len(parts) > 1:
            parts = [dask.delayed(_merge_many)(merge, parts[k:k + 8]) for k in range(0, len(parts), 8)]
        tasks[key] = parts[0]
    (computed,) = dask.compute(tasks)
    return computed


def _merge_many(merge, parts):
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p)
    return out


def _findings(stats: dict[str, dict], cat: Catalog) -> tuple[list[Problem], list[Problem]]:
    limits = load_limits()
    max_share = limits.max_nodata_share_inside_region
    errors, warnings = [], []
    for key, s in stats.items():
        spec = cat.layers[key]
        f = str(cat.path_of(spec.path))
        gaps = sum(s.get(k, 0) for k in GAP_KINDS)
        if gaps:
            n_in = s["region_px"]
            share = gaps / n_in if n_in else 1.0
            nod = cat.layers[key].nodata if cat.layers[key].nodata is not None else "none"
            parts = [f"{s['nan']:,} NaN" if s["nan"] else "", f"{s['inf']:,} ±inf" if s["inf"] else "",
                     f"{s['declared']:,} the declared nodata {_num(nod)}" if s["declared"] else "",
                     f"{s['fill']:,} fill code(s) such as {_num(s['fill_example'])}" if s["fill"] else ""]
            what = (f"{gaps:,} of the region's {n_in:,} pixels ({share:.2%}) hold no data: "
                    f"{', '.join(p for p in parts if p)}")
            limit = (f"max_nodata_share_inside_region = {max_share.value:g} in "
                     f"raster_inputs/{limits.path.name} ({max_share.source.split(';')[0]})")
            if share > max_share.value:
                errors.append(Problem("nodata-inside-region", f, key, f"{what}; every total would silently leave them out",
                                      f"fill the gaps (another product, gdal_fillnodata.py) or correct the nodata "
                                      f"declaration; the limit is {limit}"))
            else:
                warnings.append(Problem("nodata-inside-region", f, key,
                                        f"{what}; below the limit, so they count as nothing in every total",
                                        f"fill them for complete totals; the limit is {limit}"))
        if s.get("unknown", 0) > 0:
            errors.append(Problem("unknown-class", f, key,
                                  f"{int(s['unknown']):,} pixel(s) hold code(s) not in the {spec.classes} scheme "
                                  f"(e.g. {int(s['unknown_example'])}); this is not nodata (nodata is {spec.nodata})",
                                  f"recode them to a {spec.classes} class or to the nodata value"))
        if "min" in s:
            lo, hi, unit = PHYSICAL_RANGE[spec.variable]
            vmin, vmax = float(s["min"]), float(s["max"])
            if vmin == np.inf:
                errors.append(Problem("all-nodata", f, key, "every pixel is nodata", "check the file and its nodata value"))
            elif vmin < lo or vmax > hi:
                errors.append(Problem("out-of-range", f, key,
                                      f"values {vmin:g}..{vmax:g} {unit} fall outside the physical range {lo:g}..{hi:g} {unit}",
                                      "check the unit (e.g. m vs mm, 0.1 mm scale factors) and the nodata value"))
    return errors, warnings


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


def problems_from_stats(stats: dict[str, dict], cat: Catalog) -> list[Problem]:
    """The value problems that refuse a run (errors)."""
    return _findings(stats, cat)[0]


def warnings_from_stats(stats: dict[str, dict], cat: Catalog) -> list[Problem]:
    """Value findings below a refusal limit (e.g. a few nodata pixels inside the region)."""
    return _findings(stats, cat)[1]


def validation_report(cat: Catalog) -> tuple[list[Problem], list[Problem]]:
    """Full validation (structure, tables, then values in one lazy pass): (errors, warnings)."""
    from .readers import open_layers, read_vector

    from .sources import check_sources, tenure_warnings

    probs = check_structure(cat)
    probs += check_sources(cat)
    if probs:
        return probs, []
    layers, grid = open_layers(cat, raw=True)   # value checks name the product's own codes
    boundary = read_vector(cat, "boundary", grid.crs)
    region = region_mask(boundary.geometry, grid, layers[cat.catalog.reference_layer])
    errors, warnings = _findings(compute_checks(layer_checks(layers, cat, region)), cat)
    return errors, warnings + (tenure_warnings(cat) if cat.sources else [])


def validate_catalog(cat: Catalog) -> list[Problem]:
    """The problems that refuse the catalog (``eco-value validate`` also shows the warnings)."""
    return validation_report(cat)[0]


def layer_path(cat: Catalog, key: str) -> Path:
    return cat.path_of(cat.layers[key].path)

