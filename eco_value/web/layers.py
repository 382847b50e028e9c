"""Map layers of a run: its result COGs as PNG tiles (rio-tiler), with legends and units; zones as GeoJSON.

Only files the run itself wrote are served: a layer is chosen by its key from :func:`run_layers`, never
by a path from the request.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import EcoValueError

TILE_SIZE = 256
LEGEND_STEPS = 8
# (file-name suffix, unit shown, colour map); sinks can be negative: a diverging map centred on 0
SUFFIXES = (
    ("_value_cny_per_km2.tif", "CNY/km²/yr", "viridis"),
)
FIXED = {
    "gep": ("gep_cny_per_km2.tif", "GEP per km²", "CNY/km²/yr", "viridis"),
    "carbon_stock": ("carbon_stock_2023_tc_per_ha.tif", "carbon stock (end of period)", "t C/ha", "ylgn"),
    "carbon_sink": ("carbon_sink_tco2e_per_ha_yr.tif", "net carbon sink", "t CO₂e/ha/yr", "rdylgn"),
}
DIVERGING = {"rdylgn"}
STRETCH_PCT = (2, 98)   # colour stretch between these percentiles of the valid pixels


class LayerError(EcoValueError):
    pass


def outputs_dir(summary: dict) -> Path | None:
    p = (summary.get("outputs") or {}).get("rasters")
    return Path(p) if p else None


def run_layers(summary: dict) -> dict[str, dict]:
    """key → {file, title, unit, cmap} for the result rasters of a run that exist on disk."""
    d = outputs_dir(summary)
    out: dict[str, dict] = {}
    if d is None or not d.is_dir():
        return out
    for key, (fn, title, unit, cm) in FIXED.items():
        if (d / fn).exists():
            out[key] = {"file": str(d / fn), "title": title, "unit": unit, "cmap": cm}
    for svc in sorted((summary.get("gep") or {}).get("by_service", {})):
        for suffix, unit, cm in SUFFIXES:
            f = d / f"{svc}{suffix}"
            if f.exists():
                out[svc] = {"file": str(f), "title": f"{svc.replace('_', ' ')} value per km²", "unit": unit, "cmap": cm}
    return out


_lock = threading.Lock()


@lru_cache(maxsize=256)
def _stretch(path: str, mtime: float, diverging: bool) -> tuple[float, float]:
    import rasterio

    with rasterio.open(path) as ds:
        a = ds.read(1, masked=True)
    v = np.asarray(a.compressed(), dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(v, STRETCH_PCT))
    if diverging:
        m = max(abs(lo), abs(hi)) or 1.0
        return -m, m
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def legend(layer: dict) -> dict:
    from rio_tiler.colormap import cmap

    lo, hi = _stretch(layer["file"], Path(layer["file"]).stat().st_mtime, layer["cmap"] in DIVERGING)
    cm = cmap.get(layer["cmap"])
    stops = []
    for i in range(LEGEND_STEPS + 1):
        r, g, b, _ = cm[int(round(i * 255 / LEGEND_STEPS))]
        stops.append(f"rgb({int(r)},{int(g)},{int(b)})")
    return {"title": layer["title"], "unit": layer["unit"], "min": lo, "max": hi, "colors": stops}


@lru_cache(maxsize=1)
def empty_tile() -> bytes:
    """A transparent tile for places outside the raster (an image, so browsers log no failed load)."""
    from rio_tiler.models import ImageData

    return ImageData(np.ma.masked_all((1, 1, 1), dtype="uint8")).render(img_format="PNG")


def render_tile(layer: dict, z: int, x: int, y: int) -> bytes | None:
    """A PNG tile, or None where the raster has no data."""
    from rio_tiler.colormap import cmap
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    lo, hi = _stretch(layer["file"], Path(layer["file"]).stat().st_mtime, layer["cmap"] in DIVERGING)
    with Reader(layer["file"]) as r:
        try:
            img = r.tile(x, y, z, tilesize=TILE_SIZE)
        except TileOutsideBounds:
            return None
    img.rescale(in_range=((lo, hi),))
    return img.render(img_format="PNG", colormap=cmap.get(layer["cmap"]))


GEOJSON_GRID_DEG = 1e-6   # about 0.1 m: outlines for display, not for computation
ZONE_LAYERS = {"townships": "townships", "parcels": "parcels"}


@lru_cache(maxsize=32)
def _zones_geojson(gpkg: str, mtime: float, layer: str) -> str:
    import geopandas as gpd

    import shapely

    g = gpd.read_file(gpkg, layer=layer).to_crs(4326)
    g["geometry"] = shapely.set_precision(g.geometry.values, GEOJSON_GRID_DEG)
    keep = [c for c in g.columns if c in ("zone_id", "township_id", "holder_id", "area_ha", "gep_cny",
                                            "net_sink_tco2e_per_yr", "geometry")]
    return g[keep].to_json(drop_id=True)


def zones_geojson(summary: dict, kind: str) -> str:
    if kind not in ZONE_LAYERS:
        raise LayerError(f"zone layer {kind!r} is unknown; choose one of {', '.join(ZONE_LAYERS)}")
    gp = (summary.get("outputs") or {}).get("geopackage")
    if not gp or not Path(gp).exists():
        raise LayerError("this run has no zones.gpkg on disk (its output folder was moved or deleted); "
                         "write it again with `eco-value run --force`")
    return _zones_geojson(gp, Path(gp).stat().st_mtime, ZONE_LAYERS[kind])


def layer_index(summary: dict) -> list[dict]:
    return [{"key": k, **legend(v)} for k, v in run_layers(summary).items()]


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
