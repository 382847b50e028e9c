"""Limits of input validation, read from ``raster_inputs/validation.toml`` (data, not code).

Every bound there is ``{value, unit, source}``, or a set of such bounds keyed by another column of
the row (``by = "unit"``). :func:`load_limits` checks the file's own shape so a malformed limit is a
clear error, never a silently skipped check.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import RuleSetError
from ..resources import data_dir

LIMITS_FILE = "validation.toml"
COLUMN_TYPES = ("text", "number", "integer")
BOUND_KEYS = ("min", "greater_than", "max", "max_per_km2")


@dataclass(frozen=True)
class Bound:
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class KeyedBound:
    """A bound whose value depends on another column of the same row (e.g. the product's unit)."""

    by: str | None
    bounds: dict[str, Bound]   # key "" when not keyed

    def for_row(self, key: str | None) -> Bound | None:
        return self.bounds.get("" if self.by is None else str(key))


@dataclass(frozen=True)
class ColumnRule:
    name: str
    type: str
    required: bool = True
    allowed: tuple[str, ...] | None = None
    vocabulary: str | None = None
    bounds: dict[str, KeyedBound] = field(default_factory=dict)


@dataclass(frozen=True)
class TableRule:
    key: str
    description: str
    columns: dict[str, ColumnRule]
    min_rows: Bound | None = None
    max_rows: Bound | None = None


@dataclass(frozen=True)
class Limits:
    path: Path
    max_nodata_share_inside_region: Bound
    fill_codes: tuple[float, ...]
    fill_codes_source: str
    tables: dict[str, TableRule]
    max_service_nodata_share_per_zone: Bound | None = None
    service_nodata_zone_kinds: tuple[str, ...] = ()


def _bound(raw, where: str, path: Path) -> Bound:
    if not isinstance(raw, dict) or not {"value", "unit", "source"} <= set(raw):
        raise RuleSetError(f"{path}: {where} must be {{ value, unit, source }}, got {raw!r}")
    if not isinstance(raw["value"], (int, float)) or isinstance(raw["value"], bool):
        raise RuleSetError(f"{path}: {where}.value must be a number, got {raw['value']!r}")
    return Bound(float(raw["value"]), str(raw["unit"]), str(raw["source"]))


def _keyed(raw, where: str, path: Path) -> KeyedBound:
    if isinstance(raw, dict) and "by" in raw:
        return KeyedBound(str(raw["by"]), {k: _bound(v, f"{where}.{k}", path) for k, v in raw.items() if k != "by"})
    return KeyedBound(None, {"": _bound(raw, where, path)})


@lru_cache(maxsize=4)
def load_limits(path: str | None = None) -> Limits:
    """Read and check the validation limits (default: the shipped ``raster_inputs/validation.toml``)."""
    p = Path(path) if path else data_dir("raster_inputs") / LIMITS_FILE
    with open(p, "rb") as f:
        raw = tomllib.load(f)
    r = raw.get("rasters", {})
    fill = r.get("fill_codes", {})
    if not isinstance(fill.get("value"), list):
        raise RuleSetError(f"{p}: rasters.fill_codes.value must be a list of numbers")
    tables = {}
    for key, t in raw.get("tables", {}).items():
        cols = {}
        for name, c in t.get("columns", {}).items():
            where = f"tables.{key}.columns.{name}"
            if c.get("type") not in COLUMN_TYPES:
                raise RuleSetError(f"{p}: {where}.type must be one of {COLUMN_TYPES}, got {c.get('type')!r}")
            unknown = set(c) - {"type", "required", "allowed", "vocabulary", *BOUND_KEYS}
            if unknown:
                raise RuleSetError(f"{p}: {where} has unknown key(s) {sorted(unknown)}")
            bounds = {b: _keyed(c[b], f"{where}.{b}", p) for b in BOUND_KEYS if b in c}
            cols[name] = ColumnRule(name, c["type"], bool(c.get("required", True)),
                                    tuple(c["allowed"]) if "allowed" in c else None, c.get("vocabulary"), bounds)
        for name, col in cols.items():   # a keyed bound must cover every allowed value of its key column
            for b, kb in col.bounds.items():
                if kb.by is None:
                    continue
                key_col = cols.get(kb.by)
                if key_col is None or key_col.allowed is None or set(key_col.allowed) - set(kb.bounds):
                    raise RuleSetError(f"{p}: tables.{key}.columns.{name}.{b} is keyed by '{kb.by}', which must be a "
                                       f"column with `allowed` values each having a bound")
        tables[key] = TableRule(key, str(t.get("description", "")), cols,
                                _bound(t["min_rows"], f"tables.{key}.min_rows", p) if "min_rows" in t else None,
                                _bound(t["max_rows"], f"tables.{key}.max_rows", p) if "max_rows" in t else None)
    svc = r.get("max_service_nodata_share_per_zone", {})
    kinds = svc.get("zone_kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise RuleSetError(f"{p}: rasters.max_service_nodata_share_per_zone.zone_kinds must be a list of zone kinds")
    return Limits(p, _bound(r.get("max_nodata_share_inside_region"), "rasters.max_nodata_share_inside_region", p),
                  tuple(float(v) for v in fill["value"]), str(fill.get("source", "")), tables,
                  _bound(svc, "rasters.max_service_nodata_share_per_zone", p), tuple(kinds))
