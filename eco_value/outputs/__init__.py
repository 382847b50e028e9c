"""Outputs a GIS user opens directly: Cloud-Optimized GeoTIFFs, zone tables (CSV, GeoPackage), report."""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pandas as pd
from rasterio.shutil import copy as rio_copy


def finalize_rasters(folder: Path) -> list[Path]:
    """Turn the tiled GeoTIFFs written during the compute into COGs (ZSTD, overviews), atomically."""
    out = []
    for tif in sorted(Path(folder).glob("*.tif")):
        tmp = tif.with_name(f".{tif.name}.cog")
        rio_copy(tif, tmp, driver="COG", compress="ZSTD", predictor=3, blocksize=512,
                 overview_resampling="average", num_threads="ALL_CPUS")
        os.replace(tmp, tif)
        out.append(tif)
    return out


def write_zone_tables(folder: Path, zones: dict, tables: dict[str, list[dict]], run_id: str) -> dict[str, str]:
    """Township and parcel tables as CSV and one GeoPackage (layers townships, parcels, county)."""
    folder = Path(folder)
    out = {}
    gpkg = folder / "zones.gpkg"
    tmp = folder / ".zones.tmp.gpkg"
    if tmp.exists():
        tmp.unlink()
    for kind, rows in tables.items():
        df = pd.DataFrame(rows)
        df.insert(0, "run_id", run_id)
        csv = folder / f"{kind}_values.csv"
        df.to_csv(csv, index=False)
        out[f"{kind}_csv"] = str(csv)
        gdf, _w, _idf = zones[kind]
        id_field = df["zone_id"]
        geo = gdf.copy()
        geo["zone_id"] = geo.iloc[:, 0].astype(str) if "zone_id" not in geo else geo["zone_id"]
        key = [c for c in geo.columns if c.endswith("_id") or c == "adcode"][0]
        geo = geo[[key, "geometry"]].rename(columns={key: "zone_id"})
        geo["zone_id"] = geo["zone_id"].astype(str)
        merged = gpd.GeoDataFrame(df.merge(geo, on="zone_id", how="left"), geometry="geometry", crs=gdf.crs)
        del id_field
        merged.to_file(tmp, layer={"county": "county", "township": "townships", "parcel": "parcels"}[kind], driver="GPKG")
    os.replace(tmp, gpkg)
    out["geopackage"] = str(gpkg)
    return out
