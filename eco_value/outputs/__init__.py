"""Outputs a GIS user opens directly: Cloud-Optimized GeoTIFFs, zone tables (CSV, GeoPackage), report.

Heavy libraries are imported inside the functions, so a light writer (``invest_maps``) starts fast."""

from __future__ import annotations

import os
from pathlib import Path

from ..ids import csv_safe_frame

#: COG options of the run's maps. ZSTD level 3 with the floating-point predictor: on a 27 Mpx 10 m
#: pilot map the conversion (overviews included) takes 0.65 s against 1.19 s at GDAL's default level 9,
#: for files 8 % larger (25.6 vs 23.7 MB); level 1 saves another 0.1 s for +19 % (benchmarks/README.md).
COG_OPTIONS = dict(driver="COG", compress="ZSTD", level=3, predictor=3, blocksize=512, overview_resampling="average")

#: GDAL block cache during the COG conversion, as in the compute's pass (``engine/compute.py``): GDAL's
#: default (5 % of RAM) otherwise fills with tiles of maps already converted (issue 17).
COG_GDAL_CACHE_BYTES = 64 * 2**20


def finalize_rasters(folder: Path) -> list[Path]:
    """Turn the tiled GeoTIFFs written during the compute into COGs (ZSTD, overviews), atomically."""
    import rasterio
    from rasterio.shutil import copy as rio_copy

    out = []
    with rasterio.Env(GDAL_CACHEMAX=COG_GDAL_CACHE_BYTES):
        for tif in sorted(Path(folder).glob("*.tif")):
            tmp = tif.with_name(f".{tif.name}.cog")
            rio_copy(tif, tmp, num_threads="ALL_CPUS", **COG_OPTIONS)
            os.replace(tmp, tif)
            out.append(tif)
    return out


def write_zone_tables(folder: Path, zones: dict, tables: dict[str, list[dict]], run_id: str) -> dict[str, str]:
    """Township and parcel tables as CSV and one GeoPackage (layers townships, parcels, county)."""
    import geopandas as gpd
    import pandas as pd

    folder = Path(folder)
    out = {}
    gpkg = folder / "zones.gpkg"
    tmp = folder / ".zones.tmp.gpkg"
    if tmp.exists():
        tmp.unlink()
    for kind, rows in tables.items():
        # rows held as columns (engine.types.ColumnRows, the parcels'): the frame from its columns
        df = pd.DataFrame(rows.columns() if hasattr(rows, "columns") and len(rows) else list(rows))
        df.insert(0, "run_id", run_id)
        csv = folder / f"{kind}_values.csv"
        csv_safe_frame(df).to_csv(csv, index=False)   # ids starting with = + - @ escaped for spreadsheets
        out[f"{kind}_csv"] = str(csv)
        gdf, _w, id_field = zones[kind]
        geo = gdf[[id_field, "geometry"]].rename(columns={id_field: "zone_id"})
        geo["zone_id"] = geo["zone_id"].astype(str)
        merged = gpd.GeoDataFrame(df.merge(geo, on="zone_id", how="left"), geometry="geometry", crs=gdf.crs)
        merged.to_file(tmp, layer={"county": "county", "township": "townships", "parcel": "parcels"}[kind], driver="GPKG")
    os.replace(tmp, gpkg)
    out["geopackage"] = str(gpkg)
    return out


def write_seea_tables(folder: Path, summary: dict) -> dict[str, str]:
    """UN SEEA EA supply tables: service (rows) × ecosystem type (columns), physical and monetary,
    with totals and shares, as the GEP accounts of the county."""
    import pandas as pd

    from ..rules.ecosystem import ecosystem_types

    types = ecosystem_types()
    order = types.names()
    folder = Path(folder)
    g = summary["gep"]
    out = {}
    for kind, key in (("physical", "by_land_cover_quantity"), ("monetary", "by_land_cover_cny")):
        classes = sorted(g[key], key=lambda c: order.index(c) if c in order else len(order))
        rows = []
        for svc, v in g["by_service"].items():
            row = {"service": svc, "service_zh": v.get("name_zh", ""), "category": v.get("category", ""),
                   "unit": v["unit"] if kind == "physical" else "CNY"}
            for c in classes:
                label = types.by_name[c].label_zh if c in types else ""
                row[f"{c} {label}".strip()] = g[key][c].get(svc, 0.0)
            row["total"] = v["quantity"] if kind == "physical" else v["value_cny"]
            if kind == "monetary":
                row["share_of_gep"] = v["value_cny"] / g["total_cny"] if g["total_cny"] else 0.0
                if "actual_value_cny" in v:   # actual (used) GEP beside the supply (eco_value/accounts/actual.py)
                    row["used_share"] = v["used_share"]
                    row["actual_used_cny"] = v["actual_value_cny"]
            rows.append(row)
        df = pd.DataFrame(rows)
        if kind == "monetary":
            tot = {c: df[c].sum() for c in df.columns if c not in ("service", "service_zh", "category", "unit", "share_of_gep", "used_share")}
            df = pd.concat([df, pd.DataFrame([{"service": "GEP total", "unit": "CNY", **tot, "share_of_gep": 1.0}])], ignore_index=True)
        p = folder / f"seea_{kind}_supply.csv"
        df.to_csv(p, index=False)
        out[f"seea_{kind}_csv"] = str(p)
    return out
