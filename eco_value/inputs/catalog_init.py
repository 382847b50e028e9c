"""``eco-value catalog init``: a catalog.toml from a bureau's own files.

Given the files a county holds (小班 inventories, DLTB, DEM, products, zones, tables), write a catalog
that names each as the layer or source it is, and say for every layer the engine needs where it
comes from: a file, a source (and which), a stated derivation, or nothing (then the fix). How
products are declared (MOD16A2 scale and fill codes, a daily NetCDF's aggregate) and what unit each
plain raster must hold are data: ``raster_inputs/product-recipes.toml``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .. import roles
from ..errors import InputError, Problem
from ..resources import data_dir
from .catalog import REQUIRED_LAYERS, REQUIRED_TABLES, REQUIRED_VECTORS

DEFAULT_ID_FIELDS = {"boundary": "adcode", "townships": "township_id", "parcels": "parcel_id"}


@dataclass
class Origin:
    layer: str
    status: str     # file | source | derived | missing
    detail: str


def load_recipes() -> dict:
    with open(data_dir("raster_inputs") / "product-recipes.toml", "rb") as f:
        return tomllib.load(f)


def _v(x):
    return x["value"] if isinstance(x, dict) and "value" in x else x


def _rel(p: Path, root: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), root.resolve())).as_posix()


def _year_in(name: str) -> int | None:
    m = re.findall(r"(?<!\d)((?:19|20)\d{2})(?!\d)", Path(name).name)
    return int(m[-1]) if m else None


def _product(kind: str, given: str, root: Path, recipes: dict, year: int) -> dict | None:
    """A product source for precip/aet when the file is not a plain annual raster (NetCDF, a stack)."""
    p = Path(given)
    is_stack = any(ch in given for ch in "*?[") or p.is_dir()
    if p.suffix.lower() in (".nc", ".nc4", ".h5"):
        r = recipes["recipes"]["daily-precip-netcdf"] if kind == "precip" else None
        if r is None:
            return None
        import xarray as xr

        with xr.open_dataset(p, decode_times=False) as ds:
            var = next(v for v in ds.data_vars if ds[v].ndim >= 2)
            latlon = {"lat", "latitude"} & set(ds[var].dims) and ds.rio.crs is None
        extra = {"crs": "EPSG:4326"} if latlon else {}   # CF latitude/longitude without a grid mapping
        return {**extra, "path": _rel(p, root), "variable": var, "unit": r["unit"], "aggregate": r["aggregate"],
                "fill_values": _v(r["fill_values"]), "year": year, "resample": r["resample"],
                "variable_name": REQUIRED_LAYERS[kind], "product": "daily precipitation NetCDF"}
    if is_stack and kind == "aet":
        r = recipes["recipes"]["mod16a2"]
        pattern = (p / "*.tif") if p.is_dir() else p
        return {"path": _rel(pattern.parent, root) + "/" + pattern.name, "unit": r["unit"], "scale": _v(r["scale"]),
                "fill_values": _v(r["fill_values"]), "valid_range": _v(r["valid_range"]), "aggregate": r["aggregate"],
                "expected_steps": _v(r["expected_steps"]), "resample": r["resample"], "year": year,
                "variable_name": REQUIRED_LAYERS[kind], "product": "MOD16A2 8-day ET"}
    return None


def build_catalog(files: dict[str, str | None], out: Path, *, region: str | None = None, crs: str | None = None,
                  period: tuple[int, int] | None = None, species: str | None = None,
                  fieldmap: str | None = None, id_fields: dict[str, str] | None = None) -> tuple[dict, list[Origin]]:
    """The catalog (as a dict) for ``files`` (option name → path) and where each needed layer comes from."""
    root = out.parent
    recipes = load_recipes()
    f = {k: v for k, v in files.items() if v}
    probs: list[Problem] = []
    for k, v in f.items():
        if not any(ch in v for ch in "*?[") and not Path(v).exists():
            probs.append(Problem("missing-file", v, k, "the file does not exist", f"check the path given to --{k.replace('_', '-')}"))
    if probs:
        raise InputError(probs)
    if period is None:
        y2 = _year_in(f.get("inventory", "") or f.get("landuse", ""))
        y1 = _year_in(f.get("inventory_t1", "") or f.get("landuse_t1", ""))
        if not (y1 and y2 and y1 < y2):
            raise InputError([Problem("missing-period", str(out), "catalog.period",
                                      "the two inventory years cannot be read from the file names",
                                      "give --period FIRST SECOND, e.g. --period 2020 2023")])
        period = (y1, y2)
    if crs is None and "dem" in f:
        import rasterio

        with rasterio.open(f["dem"]) as ds:
            crs = ds.crs.to_string() if ds.crs else None
    if crs is None:
        raise InputError([Problem("missing-crs", str(out), "catalog.crs", "no CRS given and no DEM to take it from",
                                  "give --crs (e.g. EPSG:32648) or --dem")])
    cat: dict = {"catalog": {"region": region or root.resolve().name, "crs": crs, "period": list(period),
                             "reference_layer": "dem"},
                 "layers": {}, "vectors": {}, "tables": {}, "sources": {}}
    origins: list[Origin] = []
    src = cat["sources"]
    for opt, period_key in (("inventory_t1", roles.T1), ("inventory", roles.T2)):
        if opt in f:
            s = {"path": _rel(Path(f[opt]), root)}
            if fieldmap:
                s["fieldmap"] = fieldmap
            if species:
                s["species"] = _rel(Path(species), root)
            src[f"inventory_{period_key}"] = s
    if "landuse" in f:
        name = "landuse_t2" if "landuse_t1" in f else "landuse"
        src[name] = {"path": _rel(Path(f["landuse"]), root), "layer": "DLTB"}
    if "landuse_t1" in f:
        src["landuse_t1"] = {"path": _rel(Path(f["landuse_t1"]), root), "layer": "DLTB"}
    if "tenure" in f:   # 林权 records: joined to the t2 小班 (else the t1 ones) and carried into the parcels
        target = "inventory_t2" if "inventory" in f else "inventory_t1" if "inventory_t1" in f else None
        if target is None:
            raise InputError([Problem("missing-source", f["tenure"], "tenure",
                                      "tenure records join to 小班 (LB/XB), but no 小班 inventory is given",
                                      "give --inventory (the 小班 layer the certificates name) with --tenure")])
        src["tenure"] = {"path": _rel(Path(f["tenure"]), root), "kind": "tenure", "inventory": target}
    layer_defs = recipes["layers"]
    for key in ("dem", "precip", "aet", "erosivity", "erodibility", "fvc", "bulk_density"):
        if key not in f:
            continue
        prod = _product(key, f[key], root, recipes, period[1]) if key in ("precip", "aet") else None
        if prod:
            src[key] = prod
        else:
            cat["layers"][key] = {"path": _rel(Path(f[key]), root), **layer_defs[key]}
    for key in REQUIRED_VECTORS:
        if key in f:
            cat["vectors"][key] = {"path": _rel(Path(f[key]), root),
                                   "id_field": (id_fields or {}).get(key, DEFAULT_ID_FIELDS[key])}
    for key in REQUIRED_TABLES:
        if key in f:
            cat["tables"][key] = {"path": _rel(Path(f[key]), root), "year": period[1]}

    # where each needed layer comes from
    from .catalog import Catalog
    from .sources import provided_layers

    probe = Catalog.model_validate({k: v for k, v in cat.items() if v or k == "catalog"})
    provided = provided_layers(probe)
    for key in REQUIRED_LAYERS:
        if key in cat["layers"]:
            origins.append(Origin(key, "file", cat["layers"][key]["path"]))
        elif key in provided:
            name, what = provided[key]
            if what == "land_cover" and name.startswith("inventory"):
                origins.append(Origin(key, "derived", f"from the 小班 DI_LEI of '{name}' (no DLTB given for "
                                      f"{roles.split(key)[1]}); pixels outside every 小班 are nodata"))
            elif name == "landuse" and roles.split(key)[1] == roles.T1:
                origins.append(Origin(key, "derived", "the one DLTB given serves t1 and t2: no land-cover change "
                                      "is counted (give --landuse-t1 for the first year)"))
            else:
                origins.append(Origin(key, "source", f"{name} ({cat['sources'][name]['path']})"))
        else:
            origins.append(Origin(key, "missing", _missing_fix(key)))
    for key in (roles.STAND_AGE_T1,):
        if key in provided:
            origins.append(Origin(key, "source", f"{provided[key][0]} (optional layer)"))
    for key in REQUIRED_VECTORS:
        origins.append(Origin(key, "file", cat["vectors"][key]["path"]) if key in cat["vectors"]
                       else Origin(key, "missing", f"give --{key} (a polygon layer with field "
                                   f"'{DEFAULT_ID_FIELDS[key]}')"))
    for key in REQUIRED_TABLES:
        origins.append(Origin(key, "file", cat["tables"][key]["path"]) if key in cat["tables"]
                       else Origin(key, "missing", f"give --{key} (CSV, see raster_inputs/README.md)"))
    if "tenure" in src:
        origins.append(Origin("tenure", "source", f"tenure ({src['tenure']['path']}): 林权 records joined to the 小班 of "
                              f"'{src['tenure']['inventory']}' by LB/XB, carried into the parcels (optional)"))
    return {k: v for k, v in cat.items() if v or k == "catalog"}, origins


def _missing_fix(key: str) -> str:
    role, period = roles.split(key)
    if role in (roles.FOREST_TYPE, roles.VOLUME):
        return f"no default: give --inventory{'-t1' if period == roles.T1 else ''} (the 小班 layer of that year)"
    if role == roles.LAND_COVER:
        return f"no default: give --landuse{'-t1' if period == roles.T1 else ''} (DLTB) or the 小班 inventory of that year"
    return f"no default: give --{key.replace('_', '-')} (a raster in {REQUIRED_LAYERS[key]})"
