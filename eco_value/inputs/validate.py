"""Validation that refuses bad data before any result is stored.

Two stages, both collecting every problem rather than stopping at the first:

1. :func:`check_structure` (no pixel read): files exist and open, are not truncated, have a CRS
   that matches or a declared resampling, overlap the region, declare nodata and a known unit;
   vector layers open, have valid geometries and unique ids; tables exist.
2. :func:`value_checks` builds *lazy* statistics (min/max, unknown class counts) that the pipeline
   computes in the same single ``dask.compute`` as the valuation; :func:`problems_from_stats` turns
   them into problems, and the pipeline refuses to store anything when there are some.
"""

from __future__ import annotations

import math
from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import xarray as xr
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError

from ..errors import Problem
from ..units import KNOWN_UNITS, is_known
from .catalog import REQUIRED_LAYERS, REQUIRED_TABLES, REQUIRED_VECTORS, Catalog
from .classes import SCHEMES

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


def check_structure(cat: Catalog, require_all: bool = True) -> list[Problem]:
    """Check every file of the catalog without reading pixels; return all problems found."""
    probs: list[Problem] = []
    src = str(cat.source or "catalog.toml")
    if require_all:
        for key, var in REQUIRED_LAYERS.items():
            if key not in cat.layers:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no layer '{key}' ({var})",
                                     f"add a [layers.{key}] entry pointing at a {var} raster"))
        for key in REQUIRED_VECTORS:
            if key not in cat.vectors:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no vector layer '{key}'",
                                     f"add a [vectors.{key}] entry"))
        for key in REQUIRED_TABLES:
            if key not in cat.tables:
                probs.append(Problem("missing-layer", src, key, f"the catalog has no table '{key}'",
                                     f"add a [tables.{key}] entry"))
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
        f = str(path)
        if not is_known(spec.unit):
            probs.append(Problem("unknown-unit", f, key, f"unit '{spec.unit}' is not known",
                                 f"use one of: {', '.join(sorted(KNOWN_UNITS))}"))
        if spec.classes is not None and spec.classes not in SCHEMES:
            probs.append(Problem("unknown-class-scheme", f, key, f"class scheme '{spec.classes}' is not known",
                                 f"use one of {sorted(SCHEMES)}"))
        if not path.exists():
            probs.append(Problem("missing-file", f, key, "the file does not exist",
                                 "check the path in catalog.toml (relative to the catalog) or regenerate the data"))
            continue
        try:
            with rasterio.open(path) as ds:
                trunc = _truncated(ds, path.stat().st_size)
                if trunc:
                    probs.append(Problem("truncated", f, key, trunc, "copy or download the file again"))
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
    for key, spec in cat.tables.items():
        path = cat.path_of(spec.path)
        if not path.exists():
            probs.append(Problem("missing-file", str(path), key, "the table file does not exist",
                                 "check the path in catalog.toml"))
    return _dedupe(probs)


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
        f = str(path)
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
# value checks, computed lazily in the run's single compute


def value_checks(layers: dict[str, xr.DataArray], cat: Catalog) -> dict[str, dict[str, da.Array]]:
    """Lazy statistics per layer: min/max for continuous layers, unknown-code count for class layers."""
    stats: dict[str, dict[str, da.Array]] = {}
    for key, arr in layers.items():
        spec = cat.layers[key]
        data = arr.data
        nod = arr.attrs.get("nodata")
        valid = da.ones_like(data, dtype=bool) if nod is None else (data != nod) & ~da.isnan(data.astype("float64")) \
            if np.issubdtype(data.dtype, np.floating) else (data != nod)
        if spec.classes in SCHEMES:
            known = np.array(sorted(SCHEMES[spec.classes]))
            unknown = valid & ~da.isin(data, known)
            stats[key] = {"unknown": unknown.sum(), "unknown_example": da.where(unknown, data.astype("int64"), -1).max()}
        elif spec.variable in PHYSICAL_RANGE:
            x = data.astype("float64")
            stats[key] = {"min": da.where(valid, x, np.inf).min(), "max": da.where(valid, x, -np.inf).max()}
    return stats


def problems_from_stats(stats: dict[str, dict], cat: Catalog) -> list[Problem]:
    probs = []
    for key, s in stats.items():
        spec = cat.layers[key]
        f = str(cat.path_of(spec.path))
        if "unknown" in s and int(s["unknown"]) > 0:
            probs.append(Problem("unknown-class", f, key,
                                 f"{int(s['unknown']):,} pixel(s) hold code(s) not in the {spec.classes} scheme "
                                 f"(e.g. {int(s['unknown_example'])}); this is not nodata (nodata is {spec.nodata})",
                                 f"recode them to a {spec.classes} class or to the nodata value"))
        if "min" in s:
            lo, hi, unit = PHYSICAL_RANGE[spec.variable]
            vmin, vmax = float(s["min"]), float(s["max"])
            if vmin == np.inf:
                probs.append(Problem("all-nodata", f, key, "every pixel is nodata", "check the file and its nodata value"))
            elif vmin < lo or vmax > hi:
                probs.append(Problem("out-of-range", f, key,
                                     f"values {vmin:g}..{vmax:g} {unit} fall outside the physical range {lo:g}..{hi:g} {unit}",
                                     "check the unit (e.g. m vs mm, 0.1 mm scale factors) and the nodata value"))
    return probs


def validate_catalog(cat: Catalog) -> list[Problem]:
    """Full validation (structure, then values) for ``eco-value validate``."""
    import dask

    from .readers import open_layers

    probs = check_structure(cat)
    if probs:
        return probs
    layers, _grid = open_layers(cat)
    stats = value_checks(layers, cat)
    (computed,) = dask.compute(stats)
    return problems_from_stats(computed, cat)


def layer_path(cat: Catalog, key: str) -> Path:
    return cat.path_of(cat.layers[key].path)
