"""The input catalog (``catalog.toml``): which file holds which layer, in which unit, for which year.

See ``raster_inputs/README.md`` for the format. Paths are relative to the catalog file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError, Problem

Resampling = Literal["nearest", "bilinear", "average", "mode", "cubic"]


class LayerSpec(BaseModel):
    """One raster layer of the catalog."""

    model_config = ConfigDict(extra="forbid")
    path: str
    variable: str
    unit: str
    nodata: float | int | None = None
    year: int | None = None
    product: str = ""
    classes: str | None = None
    band: int = 1   # 1-based; validation refuses a band the file does not have
    resample: Resampling | None = Field(
        default=None,
        description="declared resampling when the layer's grid or CRS differs from the reference layer",
    )


class VectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    layer: str | None = None
    id_field: str


class TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    year: int | None = None


class CatalogMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    region: str
    adcode: str = ""
    name_zh: str = ""
    name_en: str = ""
    crs: str
    resolution_m: float | None = None
    period: tuple[int, int]
    synthetic: bool = False
    reference_layer: str = "lulc_2020"


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: CatalogMeta
    layers: dict[str, LayerSpec]
    vectors: dict[str, VectorSpec] = {}
    tables: dict[str, TableSpec] = {}
    source: Path | None = None

    @property
    def root(self) -> Path:
        return self.source.parent if self.source else Path(".")

    def path_of(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p


# Layers a full valuation needs, with the variable each must hold.
REQUIRED_LAYERS: dict[str, str] = {
    "dem": "elevation",
    "lulc_2020": "land_cover",
    "lulc_2023": "land_cover",
    "forest_type_2020": "forest_type",
    "forest_type_2023": "forest_type",
    "volume_2020": "growing_stock_volume",
    "volume_2023": "growing_stock_volume",
    "precip": "precipitation",
    "aet": "actual_evapotranspiration",
    "erosivity": "rainfall_erosivity",
    "erodibility": "soil_erodibility",
    "fvc": "vegetation_cover",
    "bulk_density": "soil_bulk_density",
}
REQUIRED_VECTORS = ("boundary", "townships", "parcels")
REQUIRED_TABLES = ("provisioning", "tourism")


def load_catalog(path: str | Path) -> Catalog:
    """Read and type-check a catalog.toml; every problem is reported at once."""
    path = Path(path)
    if path.is_dir():
        path = path / "catalog.toml"
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), "catalog", "the catalog file does not exist",
                                  "give the path of a catalog.toml (make one with `eco-value pilot-data`)")])
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise InputError([Problem("bad-catalog", str(path), "catalog", f"not valid TOML ({exc})",
                                  "fix the TOML syntax at the position given")]) from None
    try:
        cat = Catalog.model_validate(raw)
    except ValidationError as exc:
        probs = [
            Problem("bad-catalog", str(path), ".".join(str(x) for x in e["loc"]), e["msg"],
                    "see raster_inputs/README.md for the catalog fields")
            for e in exc.errors()
        ]
        raise InputError(probs) from None
    cat.source = path.resolve()
    return cat
