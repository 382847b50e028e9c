"""The input catalog (``catalog.toml``): which file holds which layer, in which unit, for which year.

See ``raster_inputs/README.md`` for the format. Paths are relative to the catalog file. Raster layers
are keyed by role and period (``land_cover@t1``, ``volume@t2``, ``dem``; see :mod:`eco_value.roles`);
the years of t1 and t2 are the catalog's ``period``. A categorical layer names its class ``scheme``
(``raster_inputs/schemes/``). Catalogs of the earlier form (``lulc_2020``, ``volume_2023``,
``classes = "CLCD"``) are read too: :func:`legacy_layer_key` maps their keys.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import roles
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
    scheme: str | None = Field(default=None, description="class scheme of a categorical layer (raster_inputs/schemes/)")
    band: int = 1   # 1-based; validation refuses a band the file does not have
    resample: Resampling | None = Field(
        default=None,
        description="declared resampling when the layer's grid or CRS differs from the reference layer",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_classes_field(cls, data):
        if isinstance(data, dict) and "classes" in data:
            data = dict(data)
            old = data.pop("classes")
            data.setdefault("scheme", old)
        return data

    @property
    def classes(self) -> str | None:
        """The class scheme (the field's earlier name)."""
        return self.scheme


class VectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    layer: str | None = None
    id_field: str


class SourceSpec(BaseModel):
    """A source that is not a plain raster (``[sources.<name>]``): a 小班 inventory, a DLTB land-use
    layer or a public product with scale, fill codes and a time aggregate. What each provides:
    :mod:`eco_value.inputs.sources`."""

    model_config = ConfigDict(extra="forbid")
    path: str | list[str]
    kind: Literal["inventory", "landuse", "product", "tenure"] | None = None   # default: from the name
    period: Literal["t1", "t2"] | None = None                         # default: from a _t1/_t2 suffix
    layer: str | None = None
    encoding: str | None = None
    fieldmap: str | None = None
    species: str | None = None          # the bureau's species crosswalk (CSV code,group or TOML)
    change_reasons: str | None = None   # inventory: the bureau's change-reason code map (TOML; default
                                        # raster_inputs/fieldmaps/change-reasons.toml); read from the t2 inventory
    county: str | None = None           # DLTB: adcode every ZLDWDM must start with
    inventory: str | None = None        # tenure: the inventory source its records join to (default: the t2 one)
    # products (raster_inputs/product-units.toml for units)
    unit: str = ""
    variable: str | None = None         # NetCDF variable
    variable_name: str | None = None    # the engine variable (default: the layer key)
    scale: float | None = None
    offset: float = 0.0
    valid_range: tuple[float, float] | None = None
    fill_values: list[float] = []
    aggregate: Literal["sum", "mean"] | None = None
    time_dim: str = "time"
    year: int | None = None
    expected_steps: int | None = None
    crs: str | None = None
    resample: Resampling | None = None
    product: str = ""
    note: str = ""


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
    reference_layer: str = roles.LAND_COVER_T1


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: CatalogMeta
    layers: dict[str, LayerSpec] = {}
    vectors: dict[str, VectorSpec] = {}
    tables: dict[str, TableSpec] = {}
    sources: dict[str, SourceSpec] = {}
    source: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, data):
        """Earlier catalogs keyed periodic layers by year (``lulc_2020``); key them by role@period."""
        if not isinstance(data, dict) or not isinstance(data.get("layers"), dict):
            return data
        meta = data.get("catalog") or {}
        period = meta.get("period")
        if not (isinstance(period, (list, tuple)) and len(period) == 2):
            return data
        data = dict(data)
        data["layers"] = {legacy_layer_key(k, tuple(period)): v for k, v in data["layers"].items()}
        if isinstance(meta, dict) and isinstance(meta.get("reference_layer"), str):
            data["catalog"] = dict(meta, reference_layer=legacy_layer_key(meta["reference_layer"], tuple(period)))
        return data

    @property
    def root(self) -> Path:
        return self.source.parent if self.source else Path(".")

    def path_of(self, rel: str) -> Path:
        """A catalog path: relative to the catalog file, or a remote ``https://``/``s3://`` URL as a
        :class:`~eco_value.inputs.remote.RemotePath` (GDAL's ``/vsicurl/``, ``/vsis3/``)."""
        from .remote import RemotePath, is_remote

        if is_remote(rel):
            return RemotePath(rel)
        p = Path(rel)
        return p if p.is_absolute() else self.root / p


# Old (year-keyed) layer names → roles; see legacy_layer_key.
LEGACY_ROLES = {"lulc": roles.LAND_COVER, "forest_type": roles.FOREST_TYPE, "volume": roles.VOLUME,
                "stand_age": roles.STAND_AGE}
_LEGACY = re.compile(r"^(" + "|".join(LEGACY_ROLES) + r")_(\d{4})$")


def legacy_layer_key(name: str, period: tuple[int, int]) -> str:
    """An earlier catalog's layer name in today's form: ``lulc_<first year>`` → ``land_cover@t1``,
    ``volume_<second year>`` → ``volume@t2``; other names are returned unchanged.

    Raises ``ValueError`` when the year is neither year of the period (the layer's period is unknown).
    """
    m = _LEGACY.match(name)
    if not m:
        return name
    year = int(m.group(2))
    if year not in period:
        raise ValueError(f"layer '{name}' is keyed by year {year}, which is neither year of the period "
                         f"{list(period)}; key it by role and period instead, e.g. "
                         f"[layers.\"{LEGACY_ROLES[m.group(1)]}@t1\"]")
    return roles.key(LEGACY_ROLES[m.group(1)], roles.PERIODS[list(period).index(year)])


# Layers a full valuation needs, with the variable each must hold.
REQUIRED_LAYERS: dict[str, str] = {
    "dem": "elevation",
    roles.LAND_COVER_T1: "land_cover",
    roles.LAND_COVER_T2: "land_cover",
    roles.FOREST_TYPE_T1: "forest_type",
    roles.FOREST_TYPE_T2: "forest_type",
    roles.VOLUME_T1: "growing_stock_volume",
    roles.VOLUME_T2: "growing_stock_volume",
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
