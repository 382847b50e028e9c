"""Catalog sources that are not plain rasters: the 小班 inventory, the DLTB land-use survey and
public products (scale / offset / fill codes / time aggregate), as the role@period layers the engine
consumes.

A catalog declares them under ``[sources.<name>]`` (see ``raster_inputs/README.md``)::

    [sources.inventory_t1]          # kind "inventory", period t1 (from the name, or kind/period fields)
    path = "xiaoban_2020.shp"
    fieldmap = "inventory-national"
    species = "species.csv"
    [sources.landuse_t2]            # kind "landuse"; "landuse" without a period gives t1 and t2
    path = "dltb_2023.gpkg"
    layer = "DLTB"
    [sources.aet]                   # any other name: a product giving the layer of that name
    path = "mod16/*.tif"
    unit = "kg/m2/8d"
    scale = 0.1
    fill_values = [32761, 32762, 32763, 32764, 32765, 32766, 32767]
    valid_range = [-32767, 32700]
    aggregate = "sum"

What each provides (a ``[layers]`` entry of the same key wins):

* ``inventory_tN`` → ``forest_type@tN`` (species-group ids), ``volume@tN`` (m³/ha), ``stand_age@t1``,
  and ``land_cover@tN`` (the 小班's ecosystem type) when no land-use source gives it;
* ``inventory_t1`` and ``inventory_t2`` together → ``change_event@t2``: the engine id
  (``accounting_rules/change_events.toml``) of the change each 小班's change reason records
  (the bureau's code map named by the t2 inventory's ``change_reasons = "my-reasons.toml"``, else
  ``raster_inputs/fieldmaps/change-reasons.toml``; derived changes give none), burnt on the t2 polygon
  (the t1 polygon for a 小班 gone by t2); the carbon engine lets it override the land-cover differencing;
* ``landuse[_tN]`` → ``land_cover@tN`` (ecosystem-type ids);
* ``tenure`` (kind ``tenure``: 林权 records, ``inputs/tenure.py``) → no layer: joined to the 小班 of the
  inventory it names (``inventory = "inventory_t2"``, default the t2 inventory, else t1) and carried into
  the parcels (:func:`parcel_tenure`);
* a product → the layer named like the source, decoded and (with ``aggregate``) annual, on the grid.

Polygons are burnt lazily per chunk with the centre-of-pixel rule (``rasterize.py``); pixels outside
the region (land cover nodata on the reference grid) get the layer's nodata, pixels inside the region
that no 小班 covers get "no stand" (species 0, volume 0, age 0). The readers' checks run when a
source is read; :func:`check_sources` collects their problems for ``eco-value validate``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr

from .. import roles
from ..errors import InputError, Problem
from ..grid import Grid
from ..rules.ecosystem import NODATA_ID
from ..rules.events import NO_EVENT
from .rasterize import rasterize_column, rasterize_rows, take_rows

NODATA_F = -9999.0


def kind_of(name: str, spec) -> str:
    if spec.kind:
        return spec.kind
    if name.startswith("inventory"):
        return "inventory"
    if name.startswith("landuse") or name.startswith("dltb"):
        return "landuse"
    if name.startswith("tenure") or name.startswith("linquan"):
        return "tenure"
    return "product"


def periods_of(name: str, spec) -> tuple[str, ...]:
    if spec.period:
        return (spec.period,)
    for p in roles.PERIODS:
        if name.endswith("_" + p):
            return (p,)
    return roles.PERIODS if kind_of(name, spec) == "landuse" else (roles.T2,)


def provided_layers(cat) -> dict[str, tuple[str, str]]:
    """layer key → (source name, what) for every layer the sources give and ``[layers]`` does not."""
    out: dict[str, tuple[str, str]] = {}
    srcs = cat.sources
    has_landuse = {p for n, s in srcs.items() if kind_of(n, s) == "landuse" for p in periods_of(n, s)}
    for name, spec in srcs.items():
        k = kind_of(name, spec)
        if k == "inventory":
            for p in periods_of(name, spec):
                out[roles.key(roles.FOREST_TYPE, p)] = (name, "forest_type")
                out[roles.key(roles.VOLUME, p)] = (name, "volume")
                if p == roles.T1:
                    out[roles.STAND_AGE_T1] = (name, "stand_age")
                if p not in has_landuse:
                    out.setdefault(roles.key(roles.LAND_COVER, p), (name, "land_cover"))
        elif k == "landuse":
            for p in periods_of(name, spec):
                out[roles.key(roles.LAND_COVER, p)] = (name, "land_cover")
        elif k == "product":
            out[name] = (name, "product")
    inv = inventories(cat)
    if set(roles.PERIODS) <= set(inv):
        out[roles.CHANGE_EVENT_T2] = (inv[roles.T2], "change_event")
    return {k: v for k, v in out.items() if k not in cat.layers}


def inventories(cat) -> dict[str, str]:
    """period → the name of the inventory source of that period."""
    return {p: n for n, s in cat.sources.items() if kind_of(n, s) == "inventory" for p in periods_of(n, s)}


def source_files(cat, name: str) -> list[Path]:
    """The files of one source (a Shapefile with its sidecars, every file of a product's glob)."""
    spec = cat.sources[name]
    paths = spec.path if isinstance(spec.path, list) else [spec.path]
    files: list[Path] = []
    for p in paths:
        full = cat.path_of(p)
        if any(ch in str(p) for ch in "*?["):
            files += sorted(full.parent.glob(full.name))
            continue
        files.append(full)
        if full.suffix.lower() == ".shp":
            files += [full.with_suffix(s) for s in (".dbf", ".shx", ".prj", ".cpg") if full.with_suffix(s).exists()]
    if spec.species:
        files.append(cat.path_of(spec.species))
    if spec.change_reasons and spec.change_reasons.endswith(".toml"):   # the bureau's own code map
        files.append(cat.path_of(spec.change_reasons))
    return files


def change_reasons_of(cat) -> str:
    """The change-reason code map of the catalog: the t2 inventory's ``change_reasons`` (a TOML path,
    relative to the catalog, or a name in ``raster_inputs/fieldmaps/``), else the default."""
    inv = inventories(cat)
    name = cat.sources[inv[roles.T2]].change_reasons if roles.T2 in inv else None
    if not name:
        return "change-reasons"
    return str(cat.path_of(name)) if name.endswith(".toml") else name


# --- reading (cached per catalog file, source and its files' mtimes) -----------------------------

def _stamp(cat, name: str) -> tuple:
    return tuple((str(f), f.stat().st_mtime_ns if f.exists() else -1) for f in source_files(cat, name))


def read_source(cat, name: str):
    """The source read and checked by its reader (a GeoDataFrame for vectors)."""
    spec = cat.sources[name]
    return _read_cached(kind_of(name, spec), str(cat.path_of(spec.path if isinstance(spec.path, str) else spec.path[0])),
                        spec.model_dump_json(), str(cat.root), _stamp(cat, name))


@lru_cache(maxsize=8)
def _read_cached(kind: str, path: str, spec_json: str, root: str, _stamp: tuple):
    import json

    spec = json.loads(spec_json)
    if kind == "inventory":
        from .inventory import read_inventory

        species = spec.get("species")
        species = str(Path(root) / species) if species and not Path(species).is_absolute() else species
        fm = spec.get("fieldmap") or "inventory-national"
        if fm.endswith(".toml") and not Path(fm).is_absolute():
            fm = str(Path(root) / fm)
        return read_inventory(path, species=species, fieldmap=fm, layer=spec.get("layer"),
                              encoding=spec.get("encoding"))
    if kind == "landuse":
        from .landuse import read_dltb

        fm = spec.get("fieldmap") or "dltb-national"
        if fm.endswith(".toml") and not Path(fm).is_absolute():
            fm = str(Path(root) / fm)
        return read_dltb(path, fieldmap=fm, layer=spec.get("layer"), encoding=spec.get("encoding"),
                         county=spec.get("county") or None)
    if kind == "tenure":
        from .tenure import read_tenure

        fm = spec.get("fieldmap") or "tenure-national"
        if fm.endswith(".toml") and not Path(fm).is_absolute():
            fm = str(Path(root) / fm)
        return read_tenure(path, fieldmap=fm, layer=spec.get("layer"), encoding=spec.get("encoding"))
    raise ValueError(kind)


def product_spec(cat, name: str):
    from .products import ProductSpec

    s = cat.sources[name]
    path = [str(cat.path_of(p)) for p in s.path] if isinstance(s.path, list) else str(cat.path_of(s.path))
    return ProductSpec(path=path, unit=s.unit, variable=s.variable, scale=s.scale, offset=s.offset,
                       valid_range=s.valid_range, fill_values=s.fill_values, aggregate=s.aggregate,
                       time_dim=s.time_dim, year=s.year, expected_steps=s.expected_steps, crs=s.crs,
                       product=s.product)


_PRODUCTS: dict[tuple, xr.DataArray] = {}   # (spec, folder, files' mtimes) -> the decoded lazy product, checked


def _product(cat, name: str):
    """The decoded (lazy) product; opened and value-checked once per spec and file state (validation and
    the layers share it)."""
    from .products import open_product

    stamp = (cat.sources[name].model_dump_json(), str(cat.root), _stamp(cat, name))
    if stamp not in _PRODUCTS:
        arr = open_product(product_spec(cat, name), check=True)
        if len(_PRODUCTS) >= 8:
            _PRODUCTS.pop(next(iter(_PRODUCTS)))
        _PRODUCTS[stamp] = arr
    return _PRODUCTS[stamp]


def check_sources(cat) -> list[Problem]:
    """Every source read by its reader; the readers' problems (file, field, offending values with
    counts, fix), all of them."""
    probs: list[Problem] = []
    for name, spec in cat.sources.items():
        try:
            if kind_of(name, spec) == "product":
                arr = _product(cat, name)
                if arr.rio.crs is None:
                    probs.append(Problem("missing-crs", str(cat.path_of(spec.path if isinstance(spec.path, str) else spec.path[0])),
                                         name, "the product has no CRS (no grid mapping in the file, none declared)",
                                         f"declare crs in [sources.{name}], e.g. crs = \"EPSG:4326\" for latitude/longitude"))
            else:
                read_source(cat, name)
        except InputError as exc:
            probs += exc.problems
    if probs:
        return probs
    try:
        if roles.CHANGE_EVENT_T2 in provided_layers(cat):
            change_events_of(cat)
        tenure_joined(cat)
    except InputError as exc:
        probs += exc.problems
    return probs


# --- two snapshots: recorded change events ------------------------------------------------------

def change_events_of(cat):
    """The 小班 with a recorded change event: ``xiaoban_id, event, event_id, geometry`` (the t2 polygon,
    or the t1 polygon of a 小班 gone by t2). Refused: a change-reason code the table does not map, an
    event the engine's table (``accounting_rules/change_events.toml``) does not have."""
    import geopandas as gpd
    import pandas as pd

    from ..rules.events import change_events
    from .inventory import change_reasons_path, change_table

    inv = inventories(cat)
    t1, t2 = read_source(cat, inv[roles.T1]), read_source(cat, inv[roles.T2])
    reasons = change_reasons_of(cat)
    ct = change_table(t1, t2, reasons=reasons)
    rec = ct[ct["event_source"] == "change_reason"]
    ev = change_events()
    unknown = rec.loc[~rec["event"].isin(list(ev.ids)), "event"].value_counts()
    if len(unknown):
        listed = ", ".join(f"'{e}' ({n}×)" for e, n in sorted(unknown.items()))
        raise InputError([Problem("unmapped-code", str(change_reasons_path(reasons)), "event",
                                  f"change events the carbon engine does not know: {listed}",
                                  f"map each change reason to one of {', '.join(ev.ids)} ({ev.path})")])
    geom = pd.concat([t2.set_index("xiaoban_id").geometry, t1.set_index("xiaoban_id").geometry])
    geom = geom[~geom.index.duplicated(keep="first")]
    out = gpd.GeoDataFrame({"xiaoban_id": rec["xiaoban_id"].to_numpy(), "event": rec["event"].to_numpy(),
                            "event_id": rec["event"].map(ev.ids).astype("int64").to_numpy()},
                           geometry=geom.reindex(rec["xiaoban_id"]).to_numpy(), crs=t2.crs)
    return out


# --- tenure -------------------------------------------------------------------------------------

def tenure_joined(cat):
    """``(inventory 小班, TenureJoin)`` of the catalog's tenure source, or None without one (joined once per
    catalog and state of its files: validation, the parcels and the warnings share it)."""
    names = [n for n, s in cat.sources.items() if kind_of(n, s) == "tenure"]
    if not names:
        return None
    inv = inventories(cat)
    target = cat.sources[names[0]].inventory or inv.get(roles.T2) or inv.get(roles.T1)
    stamp = _stamp(cat, names[0]) + (_stamp(cat, target) if target in cat.sources else ())
    key = (cat.model_dump_json(), str(cat.root), stamp)
    if key not in _TENURE_JOINED:
        if len(_TENURE_JOINED) >= 4:
            _TENURE_JOINED.pop(next(iter(_TENURE_JOINED)))
        _TENURE_JOINED[key] = _tenure_joined(cat)
    return _TENURE_JOINED[key]


_TENURE_JOINED: dict[tuple, object] = {}   # catalog, its folder and its files' state -> the join (oldest dropped)


def _tenure_joined(cat):
    from .tenure import join_tenure

    names = [n for n, s in cat.sources.items() if kind_of(n, s) == "tenure"]
    name = names[0]
    spec = cat.sources[name]
    inv = inventories(cat)
    target = spec.inventory or inv.get(roles.T2) or inv.get(roles.T1)
    if target not in cat.sources or kind_of(target, cat.sources[target]) != "inventory":
        raise InputError([Problem("missing-source", str(cat.source or "catalog.toml"), f"sources.{name}.inventory",
                                  f"tenure records join to 小班 (LB/XB), but the catalog has no inventory source "
                                  f"'{target or ''}' to join them to",
                                  "add an [sources.inventory_t2] 小班 layer, or name it with inventory = \"...\"")])
    xb = read_source(cat, target)
    return xb, join_tenure(xb, read_source(cat, name))


def tenure_warnings(cat) -> list[Problem]:
    """Tenure records that match no 小班 and 小班 only partly covered by certificates (counts, first ids):
    warnings of ``validate`` and of the run (``input_warnings``)."""
    from .tenure import join_warnings

    j = tenure_joined(cat)
    if j is None:
        return []
    name = next(n for n, s in cat.sources.items() if kind_of(n, s) == "tenure")
    return join_warnings(j[0], read_source(cat, name), j[1])


def parcel_tenure(cat, parcels, id_field: str):
    """The parcels with their tenure (:func:`eco_value.inputs.tenure.parcel_tenure`), or unchanged
    when the catalog has no tenure source."""
    from .tenure import parcel_tenure as attach

    j = tenure_joined(cat)
    if j is None:
        return parcels
    return attach(parcels, id_field, *j)


# --- layers on the grid --------------------------------------------------------------------------

def _species_ids() -> dict[str, int]:
    import tomllib

    from ..resources import data_dir

    with open(data_dir("accounting_rules") / "species_groups.toml", "rb") as f:
        raw = tomllib.load(f)["groups"]
    return {k: int(v["id"]) for k, v in raw.items()}


def _outside(lc: xr.DataArray | None, arr: xr.DataArray, nodata) -> xr.DataArray:
    if lc is None:
        return arr
    out = xr.where(lc == lc.attrs.get("nodata", NODATA_ID), np.asarray(nodata, dtype=arr.dtype), arr)
    return out.astype(arr.dtype)


def open_source_layer(cat, key: str, grid: Grid, region_lc: xr.DataArray | None,
                      rows: dict | None = None) -> xr.DataArray:
    """One layer a source provides, lazily on ``grid`` (see the module docstring). ``rows`` (source name →
    its :func:`rasterize_rows` raster) lets the layers of one inventory share one rasterisation per chunk."""
    name, what = provided_layers(cat)[key]
    spec = cat.sources[name]
    role, period = roles.split(key)
    if what == "product":
        from .products import to_grid

        prod = _product(cat, name)
        arr = to_grid(prod, grid, spec.resample or "bilinear")
        arr = arr.fillna(NODATA_F).chunk(grid.chunks)
        unit = arr.attrs.get("unit", spec.unit)
        arr.attrs = {"layer": key, "variable": spec.variable_name or key, "unit": unit, "nodata": NODATA_F,
                     "source_file": ";".join(map(str, source_files(cat, name))), "year": spec.year,
                     "product": spec.product}
        arr.name = key
        return arr
    if what == "change_event":
        ev = change_events_of(cat)
        arr = _outside(region_lc, rasterize_column(ev[["event_id", "geometry"]], "event_id", grid, fill=NO_EVENT,
                                                   dtype="uint8", name=key), NODATA_ID)
        arr.attrs = {"layer": key, "variable": "change_event", "unit": "class", "nodata": NODATA_ID,
                     "vocabulary": "change_event", "source_file": str(cat.path_of(spec.path)), "year": None,
                     "product": f"change reasons of inventory source '{name}'", "events": int(len(ev))}
        arr.name = key
        return arr
    gdf = read_source(cat, name)
    if what == "land_cover":
        col = gdf[["ecosystem_type_id", "geometry"]].copy()
        if "zldwdm" in gdf:
            col["_o"] = gdf["zldwdm"].to_numpy()
            col = col.sort_values("_o", kind="stable")
        arr = rasterize_column(col, "ecosystem_type_id", grid, fill=NODATA_ID, dtype="uint8", name=key)
        attrs = {"variable": "land_cover", "unit": "class", "nodata": NODATA_ID, "scheme": gdf.attrs.get("scheme", ""),
                 "vocabulary": "ecosystem_type"}
    else:   # an inventory's stand layers: one rasterisation of its polygons' row numbers per chunk
        if rows is None:
            rows = {}
        if name not in rows:
            rows[name] = rasterize_rows(gdf, grid)
        if what == "forest_type":
            ids = _species_ids()
            sp = np.array([ids.get(g, 0) if g else 0 for g in gdf["species_group"]], dtype="uint8")
            arr = _outside(region_lc, take_rows(rows[name], sp, 0, "uint8", key), NODATA_ID)
            attrs = {"variable": "forest_type", "unit": "class", "nodata": NODATA_ID, "scheme": "species_groups",
                     "vocabulary": "species_group"}
        else:
            column = {"volume": "volume_m3_ha", "stand_age": "age"}[what]
            vals = gdf[column].fillna(0.0).astype("float64").to_numpy()
            arr = _outside(region_lc, take_rows(rows[name], vals, 0.0, "float64", key), NODATA_F)
            attrs = {"variable": "growing_stock_volume" if what == "volume" else "stand_age",
                     "unit": "m3/ha" if what == "volume" else "yr", "nodata": NODATA_F}
    arr.attrs = dict(attrs, layer=key, source_file=str(cat.path_of(spec.path)), year=None,
                     product=f"{kind_of(name, spec)} source '{name}'")
    arr.name = key
    return arr


def open_source_layers(cat, grid: Grid, have: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """Every layer the sources provide; land cover first (it marks the region for the others)."""
    prov = provided_layers(cat)
    out: dict[str, xr.DataArray] = {}
    rows: dict[str, xr.DataArray] = {}   # one rasterisation per inventory, shared by its layers
    for k in sorted(prov, key=lambda k: roles.split(k)[0] != roles.LAND_COVER):
        lc_key = roles.key(roles.LAND_COVER, roles.split(k)[1] or roles.T1)
        lc = {**have, **out}.get(lc_key)
        if lc is None and lc_key in cat.layers:
            from .readers import open_layer

            lc = open_layer(cat, lc_key, grid)
        out[k] = open_source_layer(cat, k, grid, lc, rows)
    return out


