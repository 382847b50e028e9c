"""Forest inventory sub-compartments (二类调查 / 林草"一张图" 小班) as parcels with typed stand attributes.

How a run uses it
-----------------
::

    from eco_value.inputs import inventory as inv

    t1 = inv.read_inventory("xiaoban_2020.shp", species="species_crosswalk.csv")   # national field names
    t2 = inv.read_inventory("xiaoban_2023.shp", species="species_crosswalk.csv")
    changes = inv.change_table(t1, t2)           # afforestation / harvest / deforestation per 小班
    layers = inv.rasterize_stands(t1, grid, ["ecosystem_type_id", "volume_m3_ha", "age"])  # lazy, per chunk

* ``read_inventory`` returns a GeoDataFrame, one row per 小班, with ``xiaoban_id`` (the composite id)
  and typed attributes: ``ecosystem_type`` (+ ``ecosystem_type_id``, the engine's integer id),
  ``species_group`` (a rule-set species group: ``carbon.species.*`` / ``carbon.per_area.*``),
  ``volume_m3_ha``, ``volume_m3``, ``age``, ``age_class``, ``canopy``, ``origin``
  (natural|planted|""), ``forest_use`` (林种 code) and ``economic_forest`` (经济林, which CCER-14-001
  excludes), ``area_ha`` (the declared area, converted) and ``geom_area_ha``. Where the carbon
  equations are per stand, use these rows directly (volume × area); where a raster is needed, burn
  them with ``rasterize_stands`` (centre-of-pixel rule, see ``eco_value/inputs/rasterize.py``).
* Everything a bureau may need to change is data: the field map
  (``raster_inputs/fieldmaps/inventory-national.toml``: field names, id parts and widths, area unit
  and tolerance, DI_LEI scheme, origin / age-class / 林种 codes), the DI_LEI class schemes
  (``raster_inputs/schemes/dilei-*.toml``), the change-reason codes
  (``raster_inputs/fieldmaps/change-reasons.toml``) and the species crosswalk the bureau supplies
  (CSV ``code,group[,name_zh]`` or TOML ``[species."<code>"] group = "..."``).
* Refused, each with every offending value and its count and the fix: a missing mapped field,
  undecodable or garbled text, an unmapped DI_LEI or species code, a species group the rule set does
  not have, a duplicate 小班 id, a declared area that disagrees with the polygon beyond the tolerance
  (with the unit the ratio suggests), two snapshots with different id schemes, an unknown change reason.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError, Problem
from ..grid import M2_PER_HA, Grid
from ..resources import data_dir
from ..rules.ecosystem import ecosystem_types
from .rasterize import rasterize_column
from .schemes import Scheme, load_scheme, normalise_code
from .vectors import missing_fields, read_table, read_vector

# Definitions of the units (not model parameters): 1 ha = 15 亩 (市亩, 666.67 m²) = 10,000 m².
HA_PER_UNIT = {"ha": 1.0, "mu": 1.0 / 15.0, "m2": 1.0 / M2_PER_HA}


def fieldmaps_dir() -> Path:
    return data_dir("raster_inputs") / "fieldmaps"


def load_toml(name: str | Path, folder: Path, what: str) -> tuple[dict, Path]:
    p = Path(name)
    path = p if p.suffix == ".toml" else folder / f"{name}.toml"
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), what, f"no {what} '{name}'",
                                  f"give the path of a {what} TOML (templates in {folder})")])
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), path
    except tomllib.TOMLDecodeError as exc:
        raise InputError([Problem(f"bad-{what}", str(path), what, f"not valid TOML ({exc})",
                                  "fix the TOML syntax at the position given")]) from None


@dataclass
class InventoryFieldMap:
    """The national field names (or a bureau's edit of them) and the codes that go with them."""

    name: str
    fields: dict[str, str]
    optional: dict[str, str]
    id_parts: list[str]
    id_widths: list[int]
    area_unit: str
    area_tolerance: float
    di_lei_scheme: str
    encoding: str | None
    origin: dict
    age_classes: dict[str, int]
    economic_prefixes: tuple[str, ...]
    economic_values: tuple[str, ...]
    path: Path

    @property
    def id_scheme(self) -> str:
        return "+".join(f"{p}({w})" for p, w in zip(self.id_parts, self.id_widths))


def load_fieldmap(name: str | Path = "inventory-national") -> InventoryFieldMap:
    raw, path = load_toml(name, fieldmaps_dir(), "field map")
    area = raw.get("area", {})
    unit = area.get("unit", "ha")
    if unit not in HA_PER_UNIT:
        raise InputError([Problem("bad-fieldmap", str(path), "area.unit", f"unknown area unit '{unit}'",
                                  f"use one of {', '.join(HA_PER_UNIT)}")])
    fu = raw.get("forest_use", {})
    return InventoryFieldMap(
        name=raw.get("fieldmap", {}).get("name", path.stem),
        fields=dict(raw["fields"]),
        optional=dict(raw.get("optional_fields", {})),
        id_parts=list(raw["id"]["parts"]),
        id_widths=[int(w) for w in raw["id"]["widths"]],
        area_unit=unit,
        area_tolerance=float(area["tolerance"]["value"]),
        di_lei_scheme=raw.get("fieldmap", {}).get("di_lei_scheme", "dilei-6digit"),
        encoding=raw.get("fieldmap", {}).get("encoding") or None,
        origin=raw.get("origin", {}),
        age_classes={str(k): int(v) for k, v in raw.get("age_class", {}).get("values", {}).items()},
        economic_prefixes=tuple(fu.get("economic_prefixes", ())),
        economic_values=tuple(fu.get("economic_values", ())),
        path=path,
    )


def species_groups(rules) -> set[str]:
    """Species groups a rule set defines: names under ``carbon.species.*`` and ``carbon.per_area.*``."""
    out = set()
    for k in rules.params:
        parts = k.split(".")
        if len(parts) >= 4 and parts[0] == "carbon" and parts[1] in ("species", "per_area"):
            out.add(parts[2])
    return out


def load_species_crosswalk(path: str | Path, rules=None) -> dict[str, str]:
    """The bureau's species crosswalk: species code (text) -> rule-set species group.

    CSV with columns ``code,group`` (more columns allowed), or TOML ``[species."<code>"] group = ...``.
    Groups the rule set does not define are refused."""
    path = Path(path)
    if path.suffix.lower() == ".toml":
        raw, _ = load_toml(path, path.parent, "species crosswalk")
        table = {normalise_code(k): str(v["group"]).strip() for k, v in raw.get("species", {}).items()}
    else:
        df, _ = read_table(path, what="species crosswalk")
        lower = {c.lower().strip(): c for c in df.columns}
        if "code" not in lower or "group" not in lower:
            raise InputError([Problem("missing-field", str(path), "species crosswalk",
                                      f"needs columns 'code' and 'group' (has: {', '.join(df.columns)})",
                                      "write a CSV with a header line code,group[,name_zh]")])
        table = {normalise_code(c): g.strip() for c, g in zip(df[lower["code"]], df[lower["group"]])}
    if rules is None:
        from ..rules import load_rules

        rules = load_rules()
    known = species_groups(rules)
    bad = Counter(g for g in table.values() if g not in known)
    if bad:
        listed = ", ".join(f"'{g}' ({n} code(s))" for g, n in sorted(bad.items()))
        raise InputError([Problem("unknown-species-group", str(path), "group",
                                  f"groups not in rule set '{rules.name}': {listed}",
                                  f"use one of {', '.join(sorted(known))}, or add the group to the rule set")])
    return table


def _pad(values: pd.Series, width: int) -> pd.Series:
    return values.map(lambda v: normalise_code(v).zfill(width))


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.map(lambda v: normalise_code(v) or None), errors="coerce").astype("float64")


def read_inventory(path: str | Path, *, species: str | Path | dict | None = None,
                   fieldmap: str | Path | InventoryFieldMap = "inventory-national", layer: str | None = None,
                   encoding: str | None = None, rules=None, snapshot: str = "") -> gpd.GeoDataFrame:
    """Read a 小班 layer into parcels with typed stand attributes (see the module docstring).

    ``species``: the bureau's crosswalk (path, or a dict code -> group); without it every 小班 must
    have an empty species code. ``encoding`` overrides the field map's declared encoding (a ``.cpg``
    still wins). ``snapshot`` is a label ("t1", "t2") kept in ``attrs``."""
    fm = fieldmap if isinstance(fieldmap, InventoryFieldMap) else load_fieldmap(fieldmap)
    file = str(path)
    raw, used = read_vector(path, layer=layer, encoding=encoding or fm.encoding, what="sub-compartments")
    lyr = layer or Path(path).stem
    problems = missing_fields(raw, fm.fields, file, lyr, str(fm.path))
    if problems:
        raise InputError(problems)
    F = {role: name for role, name in fm.fields.items() if name}

    def col(role: str) -> pd.Series:
        name = F.get(role) or (fm.optional.get(role) if fm.optional.get(role) in raw.columns else None)
        return raw[name] if name else pd.Series([None] * len(raw), index=raw.index)

    out = gpd.GeoDataFrame(geometry=raw.geometry.values, crs=raw.crs, index=raw.index)
    parts = []
    for role, w in zip(fm.id_parts, fm.id_widths):
        parts.append(_pad(col(role), w))
    out["xiaoban_id"] = parts[0].str.cat(parts[1:]) if len(parts) > 1 else parts[0]
    for role, w in zip(fm.id_parts, fm.id_widths):
        if role in ("lin_ban", "xiao_ban"):
            out[role] = _pad(col(role), w)

    # duplicate ids
    dup = out["xiaoban_id"].value_counts()
    dup = dup[dup > 1]
    if len(dup):
        listed = ", ".join(f"{i} ({n}×)" for i, n in dup.head(10).items())
        problems.append(Problem("duplicate-id", file, lyr,
                                f"{len(dup)} 小班 id(s) occur more than once ({fm.id_scheme}): {listed}",
                                "each 小班 must be one row: merge the multipart rows or fix the 林班/小班 numbers"))

    # land class -> ecosystem type
    types = ecosystem_types()
    scheme: Scheme = load_scheme(fm.di_lei_scheme, "ecosystem_type")
    codes = col("di_lei")
    out["di_lei"] = codes.map(scheme.canonical)
    try:
        tnames = scheme.types_of(codes, file=file, field_name=F["di_lei"])
    except InputError as exc:
        problems += exc.problems
        tnames = [None] * len(out)
    out["ecosystem_type"] = [t or "" for t in tnames]
    out["ecosystem_type_id"] = types.ids_of(tnames).astype("int32")

    # species -> rule-set group
    sp = col("species").map(normalise_code)
    out["species_code"] = sp
    if isinstance(species, dict):
        table = {normalise_code(k): v for k, v in species.items()}
    elif species is not None:
        table = load_species_crosswalk(species, rules)
    else:
        table = {}
    unmapped = Counter(c for c in sp if c and c not in table)
    if unmapped:
        listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(unmapped.items()))
        problems.append(Problem(
            "unmapped-code", file, F.get("species", "species"),
            f"{sum(unmapped.values())} 小班 have species codes the crosswalk does not map: {listed}",
            f"add each code to the species crosswalk ({species or 'none given'}) as code,group with a group of the rule set"))
    out["species_group"] = sp.map(lambda c: table.get(c, "") if c else "")

    # numbers
    out["volume_m3_ha"] = _num(col("volume_per_ha"))
    out["volume_m3"] = _num(col("volume"))
    out["age"] = _num(col("age"))
    out["canopy"] = _num(col("canopy"))
    ac = col("age_class").map(normalise_code)
    out["age_class"] = pd.array([fm.age_classes.get(v, int(v) if v.isdigit() else pd.NA) if v else pd.NA
                                 for v in ac], dtype="Int64")
    og = col("origin").map(normalise_code)
    o = fm.origin

    def origin(v: str) -> str:
        if v in o.get("natural_values", ()) or any(v.startswith(p) for p in o.get("natural_prefixes", ())):
            return "natural"
        if v in o.get("planted_values", ()) or any(v.startswith(p) for p in o.get("planted_prefixes", ())):
            return "planted"
        return ""

    out["origin"] = og.map(lambda v: origin(v) if v else "")
    fu = col("forest_use").map(normalise_code)
    out["forest_use"] = fu
    out["economic_forest"] = fu.map(lambda v: bool(v) and (v in fm.economic_values or
                                                           any(v.startswith(p) for p in fm.economic_prefixes)))
    out["change_reason"] = col("change_reason").map(normalise_code)

    # area: declared (in its unit) vs geometry
    out["area_ha"] = _num(col("area")) * HA_PER_UNIT[fm.area_unit]
    out["geom_area_ha"] = _geometry_area_ha(out)
    problems += _area_problems(out, fm, file, lyr, F["area"])
    if problems:
        raise InputError(problems)
    out = out.sort_values("xiaoban_id").reset_index(drop=True)
    out.attrs = {"source_file": file, "encoding": used, "id_scheme": fm.id_scheme, "fieldmap": str(fm.path),
                 "di_lei_scheme": scheme.name, "snapshot": snapshot, "area_unit_declared": fm.area_unit}
    return out


def _geometry_area_ha(gdf: gpd.GeoDataFrame) -> pd.Series:
    if gdf.crs is not None and gdf.crs.is_geographic:
        gdf = gdf.to_crs(gdf.estimate_utm_crs())
    return gdf.geometry.area / M2_PER_HA


def _area_problems(out: gpd.GeoDataFrame, fm: InventoryFieldMap, file: str, lyr: str, field: str) -> list[Problem]:
    ok = out["geom_area_ha"] > 0
    rel = (out["area_ha"] - out["geom_area_ha"]).abs() / out["geom_area_ha"].where(ok)
    bad = rel > fm.area_tolerance
    if not bad.any():
        return []
    ratio = float(np.median(out.loc[bad, "area_ha"] / out.loc[bad, "geom_area_ha"] / HA_PER_UNIT[fm.area_unit]))
    # which unit would make the declared figures agree (ratio of declared number to geometry in ha)
    suggestion = min(HA_PER_UNIT, key=lambda u: abs(np.log(ratio * HA_PER_UNIT[u])) if ratio > 0 else 0)
    ex = out.loc[bad].head(5)
    listed = ", ".join(f"{i}: {a:.4g} ha declared vs {g:.4g} ha mapped" for i, a, g in
                       zip(ex["xiaoban_id"], ex["area_ha"], ex["geom_area_ha"]))
    hint = (f"; the declared numbers are {ratio:.4g}× the mapped area in ha, as if {field} were in "
            f"'{suggestion}' — set [area] unit = \"{suggestion}\" in the field map"
            if suggestion != fm.area_unit else "; fix the declared areas or the polygons, or widen [area] tolerance")
    return [Problem("area-mismatch", file, field,
                    f"{int(bad.sum())} 小班 differ from their polygon's area by more than "
                    f"{fm.area_tolerance:.0%} (area unit declared '{fm.area_unit}'): {listed}{hint}",
                    f"check the unit of {field} (ha | mu | m2) in the field map ({fm.path})")]


def rasterize_stands(parcels: gpd.GeoDataFrame, grid: Grid, columns: list[str],
                     fill: dict[str, float] | None = None) -> dict[str, xr.DataArray]:
    """Chosen stand attributes burnt onto ``grid`` lazily (centre-of-pixel rule); numeric columns
    only. Default fill: 0 for ``*_id`` columns, NaN otherwise."""
    fill = fill or {}
    out = {}
    for c in columns:
        is_id = c.endswith("_id") or pd.api.types.is_integer_dtype(parcels[c])
        f = fill.get(c, 0 if is_id else np.nan)
        dtype = "int32" if is_id else "float64"
        vals = parcels[[c, "geometry"]].copy()
        vals[c] = vals[c].astype(dtype)
        out[c] = rasterize_column(vals, c, grid, fill=f, dtype=dtype)
    return out


# --- two snapshots -------------------------------------------------------------------------------

def load_change_reasons(name: str | Path = "change-reasons") -> dict[str, str]:
    raw, _ = load_toml(name, fieldmaps_dir(), "change reasons")
    return {normalise_code(k): v["event"] for k, v in raw.get("reasons", {}).items()}


def change_reasons_path(name: str | Path = "change-reasons") -> Path:
    return load_toml(name, fieldmaps_dir(), "change reasons")[1]


def change_table(t1: gpd.GeoDataFrame, t2: gpd.GeoDataFrame,
                 reasons: str | Path = "change-reasons") -> pd.DataFrame:
    """One row per 小班 of either snapshot: the change between t1 and t2 and its reason.

    ``event`` is the change reason's event where t2 records one (``change-reasons.toml``); otherwise it
    is derived from the forest state: forest (``forest`` or a sub-type) at t1 and not at t2 ->
    deforestation, the reverse -> afforestation, a 小班 only in t1 -> removed, only in t2 -> added,
    else unchanged. ``agrees`` is False where a recorded reason contradicts the states (e.g.
    afforestation recorded but the 小班 is not forest at t2)."""
    f1, f2 = t1.attrs.get("source_file", "t1"), t2.attrs.get("source_file", "t2")
    s1, s2 = t1.attrs.get("id_scheme"), t2.attrs.get("id_scheme")
    shared = set(t1["xiaoban_id"]) & set(t2["xiaoban_id"])
    if s1 != s2 or not shared:
        l1 = Counter(t1["xiaoban_id"].str.len())
        l2 = Counter(t2["xiaoban_id"].str.len())
        raise InputError([Problem(
            "id-scheme-mismatch", f"{f1} / {f2}", "xiaoban_id",
            f"the snapshots use different 小班 id schemes (t1: {s1}, id lengths {dict(l1)}; "
            f"t2: {s2}, id lengths {dict(l2)}; {len(shared)} id(s) shared, e.g. t1 '{t1['xiaoban_id'].iloc[0]}' "
            f"vs t2 '{t2['xiaoban_id'].iloc[0]}')",
            "read both snapshots with field maps that build the same id (same parts and widths); if the 小班 were "
            "renumbered, join them with the bureau's old-new id table first")])
    table = load_change_reasons(reasons)
    reasons_path = change_reasons_path(reasons)
    types = ecosystem_types()
    cols = ["xiaoban_id", "ecosystem_type", "volume_m3_ha", "area_ha", "species_group"]
    m = pd.merge(t1[cols], t2[cols + ["change_reason"]], on="xiaoban_id", how="outer",
                 suffixes=("_t1", "_t2"), indicator=True).sort_values("xiaoban_id").reset_index(drop=True)
    m["change_reason"] = m["change_reason"].fillna("").map(normalise_code)
    unknown = Counter(c for c in m["change_reason"] if c and c not in table)
    if unknown:
        listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(unknown.items()))
        fm = t2.attrs.get("fieldmap")
        field = load_fieldmap(fm).optional.get("change_reason", "change_reason") if fm else "change_reason"
        raise InputError([Problem("unmapped-code", f2, field,
                                  f"{sum(unknown.values())} 小班 have change-reason codes not in the table: {listed}",
                                  f"map each code to an event in {reasons_path} (or give change_table the bureau's "
                                  "copy), or correct the codes in the 小班 layer")])
    fo1 = m["ecosystem_type_t1"].fillna("").map(types.is_forest)
    fo2 = m["ecosystem_type_t2"].fillna("").map(types.is_forest)
    derived = np.select(
        [m["_merge"] == "left_only", m["_merge"] == "right_only", fo1 & ~fo2, ~fo1 & fo2],
        ["removed", "added", "deforestation", "afforestation"], "unchanged")
    recorded = m["change_reason"].map(lambda c: table.get(c, ""))
    m["event"] = np.where(recorded != "", recorded, derived)
    m["event_source"] = np.where(recorded != "", "change_reason", "derived")
    contradicts = ((recorded == "afforestation") & ~fo2) | ((recorded == "deforestation") & fo2)
    m["agrees"] = ~contradicts
    m["volume_change_m3"] = (m["volume_m3_ha_t2"].fillna(0) * m["area_ha_t2"].fillna(0)
                             - m["volume_m3_ha_t1"].fillna(0) * m["area_ha_t1"].fillna(0))
    return m.drop(columns="_merge")
