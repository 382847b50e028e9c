"""The land-use survey (第三次全国国土调查 / 年度变更调查, layer DLTB) as land cover and village zones.

::

    from eco_value.inputs import landuse
    dltb = landuse.read_dltb("county.gpkg", county="510183")   # layer DLTB, national field names
    lc = landuse.land_cover(dltb, grid)          # engine ecosystem-type ids (uint8), lazy per chunk
    zones, villages = landuse.village_zones(dltb, grid)   # zone index raster + village table
    areas = landuse.areas_by_type(dltb)          # official areas (TBDLMJ) by village and type, ha

Rule on the grid: **centre of pixel** (``eco_value/inputs/rasterize.py``): a pixel takes the type of
the 图斑 containing its centre; 0 where none does. Areas come from TBDLMJ (图斑地类面积, m²: the net
area of the land class after deductions such as 田坎), never TBMJ (the gross 图斑 area). The raster's
area of a type differs from the polygons' by the pixels their boundaries cross: at most
``Σ_edges (|dx| + |dy|) / res + 1`` pixels per polygon.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError, Problem
from ..grid import M2_PER_HA, Grid
from ..rules.ecosystem import ecosystem_types
from .inventory import fieldmaps_dir, load_toml
from .rasterize import rasterize_column
from .schemes import load_scheme, normalise_code
from .vectors import missing_fields, read_vector


def read_dltb(path: str | Path, *, fieldmap: str | Path = "dltb-national", layer: str | None = None,
              county: str | None = None, encoding: str | None = None) -> gpd.GeoDataFrame:
    """DLTB polygons with ``dlbm``, ``ecosystem_type``, ``ecosystem_type_id``, ``zldwdm``,
    ``village_code`` and ``area_ha`` (TBDLMJ / 10,000). ``county``: an adcode every ZLDWDM must start
    with. Unmapped DLBM codes, missing fields and codes of another county are refused."""
    fm, fm_path = load_toml(fieldmap, fieldmaps_dir(), "field map")
    F = fm["fields"]
    meta = fm.get("fieldmap", {})
    p = Path(path)
    lyr = layer or (meta.get("layer") if p.suffix.lower() in (".gpkg", ".gdb") else None)
    raw, used = read_vector(p, layer=lyr, encoding=encoding, what="DLTB")
    lyr = lyr or p.stem
    problems = missing_fields(raw, F, str(p), lyr, str(fm_path))
    if problems:
        raise InputError(problems)
    types = ecosystem_types()
    scheme = load_scheme(meta.get("scheme", "gbt21010-2017"), "ecosystem_type")
    tnames = scheme.types_of(raw[F["code"]], file=str(p), field_name=F["code"])
    out = gpd.GeoDataFrame(geometry=raw.geometry.values, crs=raw.crs)
    out["dlbm"] = raw[F["code"]].map(scheme.canonical).to_numpy()
    out["ecosystem_type"] = [t or "" for t in tnames]
    out["ecosystem_type_id"] = types.ids_of(tnames).astype("uint8")
    out["zldwdm"] = raw[F["village"]].map(normalise_code).to_numpy()
    digits = int(fm.get("village", {}).get("digits", 12))
    out["village_code"] = out["zldwdm"].str[:digits]
    area = pd.to_numeric(raw[F["net_area"]], errors="coerce")
    if area.isna().any() or (area < 0).any():
        n = int(area.isna().sum() + (area < 0).sum())
        problems.append(Problem("bad-value", str(p), F["net_area"], f"{n} 图斑 have no or a negative {F['net_area']}",
                                f"fill {F['net_area']} (m²) for every 图斑"))
    out["area_ha"] = area.to_numpy() / M2_PER_HA
    if county:
        other = Counter(z[: len(county)] for z in out["zldwdm"] if not z.startswith(county))
        if other:
            listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(other.items()))
            problems.append(Problem("other-county", str(p), F["village"],
                                    f"{sum(other.values())} 图斑 lie in another county than {county}: prefixes {listed}",
                                    "clip the DLTB layer to the county, or give the right county adcode"))
    if problems:
        raise InputError(problems)
    out.attrs = {"source_file": str(p), "encoding": used, "scheme": scheme.name, "fieldmap": str(fm_path)}
    return out


def land_cover(dltb: gpd.GeoDataFrame, grid: Grid) -> xr.DataArray:
    """Ecosystem-type ids on ``grid`` (uint8; 0 where no 图斑 holds the pixel centre), lazy per chunk."""
    lc = rasterize_column(dltb.sort_values("zldwdm", kind="stable"), "ecosystem_type_id", grid, fill=0,
                          dtype="uint8", name="land_cover")
    lc.attrs.update({"variable": "land_cover", "unit": "class", "classes": "ecosystem_types",
                     "source_file": dltb.attrs.get("source_file", "")})
    return lc


def village_zones(dltb: gpd.GeoDataFrame, grid: Grid) -> tuple[xr.DataArray, pd.DataFrame]:
    """Village zones: an int32 raster of zone numbers (1..n, 0 outside) and the table
    ``zone, village_code, area_ha`` (area from TBDLMJ)."""
    table = (dltb.groupby("village_code", sort=True)["area_ha"].sum().reset_index())
    table.insert(0, "zone", np.arange(1, len(table) + 1, dtype="int32"))
    z = dltb[["village_code", "geometry"]].merge(table[["zone", "village_code"]], on="village_code")
    z = gpd.GeoDataFrame(z, geometry="geometry", crs=dltb.crs)
    raster = rasterize_column(z, "zone", grid, fill=0, dtype="int32", name="village")
    return raster, table


def areas_by_type(dltb: gpd.GeoDataFrame) -> pd.DataFrame:
    """Official area (TBDLMJ, ha) by village and ecosystem type."""
    return (dltb.groupby(["village_code", "ecosystem_type"], sort=True)["area_ha"].sum()
            .reset_index())
