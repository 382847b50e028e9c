"""Class schemes: a product's codes crosswalked to the engine's ecosystem types (data, not code).

The engine's vocabulary is ``accounting_rules/ecosystem_types.toml`` (type name -> integer id, with a
parent for level-2 types). A class scheme is a TOML file under ``raster_inputs/schemes/``::

    [scheme]
    name = "worldcover"
    product = "ESA WorldCover 10 m v200"
    source = "citation of the code list"
    [codes."10"]
    type = "forest"          # an ecosystem type name
    label_zh = "树木"         # optional
    [nodata]
    codes = ["0"]            # optional: codes that mean "no data" (stored as 255)

This module only reads schemes and applies them; which scheme a layer uses is the caller's choice.
Codes are compared as text; numeric values read from a file are normalised (``30100.0`` -> ``"30100"``,
and zero-padded to the scheme's code width when every code of the scheme has the same width, so a
6-digit DI_LEI stored as a number, ``30100``, still finds ``"030100"``).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, Problem
from ..resources import data_dir

NODATA_ID = 255  # the engine's land-cover nodata id (ecosystem_types.toml header)
OUTSIDE_ID = 0  # outside the region / unknown (ecosystem_types.toml header)


@dataclass(frozen=True)
class EcosystemType:
    name: str
    id: int
    parent: str | None
    label_zh: str = ""
    label_en: str = ""

    @property
    def level1(self) -> str:
        return self.parent or self.name


def load_ecosystem_types(path: str | Path | None = None) -> dict[str, EcosystemType]:
    """The engine's ecosystem types by name (``accounting_rules/ecosystem_types.toml``)."""
    path = Path(path) if path else data_dir("accounting_rules") / "ecosystem_types.toml"
    with open(path, "rb") as f:
        raw = tomllib.load(f)["types"]
    return {k: EcosystemType(k, int(v["id"]), v.get("parent"), v.get("label_zh", ""), v.get("label_en", ""))
            for k, v in raw.items()}


def is_forest(type_name: str, types: dict[str, EcosystemType]) -> bool:
    """True for ``forest`` and every type whose parent is ``forest`` (bamboo, sparse forest, ...)."""
    t = types.get(type_name)
    return t is not None and t.level1 == "forest"


def normalise_code(value) -> str:
    """A code read from a file as text: strip blanks, drop a float's ``.0``; missing -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if np.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


@dataclass
class Scheme:
    """One class scheme: code (text) -> ecosystem type name."""

    name: str
    product: str
    source: str
    codes: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    nodata: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def width(self) -> int | None:
        widths = {len(c) for c in self.codes}
        return widths.pop() if len(widths) == 1 else None

    def canonical(self, value) -> str:
        code = normalise_code(value)
        if code in self.codes or code in self.nodata or not code:
            return code
        w = self.width
        if w and code.isdigit() and len(code) < w and code.zfill(w) in self.codes:
            return code.zfill(w)
        return code

    def types_of(self, values, *, file: str, field_name: str) -> list[str | None]:
        """Ecosystem type name per value (``None`` for nodata / empty); unmapped codes are refused
        with every offending code and its count."""
        codes = [self.canonical(v) for v in values]
        bad = Counter(c for c in codes if c and c not in self.codes and c not in self.nodata)
        if bad:
            listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(bad.items()))
            raise InputError([Problem(
                "unmapped-code", file, field_name,
                f"{sum(bad.values())} value(s) of {field_name} have codes that class scheme '{self.name}' "
                f"does not map: {listed}",
                f"add each code to {self.path or 'the scheme'} as [codes.\"CODE\"] type = \"<ecosystem type>\" "
                f"(or list it under [nodata] codes), or choose the scheme that matches the data")])
        return [self.codes[c] if c in self.codes else None for c in codes]

    def lookup_table(self, types: dict[str, EcosystemType], size: int = 65536) -> np.ndarray:
        """uint8 table: integer product code -> ecosystem type id (255 for nodata and unmapped)."""
        lut = np.full(size, NODATA_ID, dtype=np.uint8)
        for code, t in self.codes.items():
            if code.isdigit() and int(code) < size:
                lut[int(code)] = types[t].id
        return lut


def schemes_dir() -> Path:
    return data_dir("raster_inputs") / "schemes"


def load_scheme(name: str | Path, types: dict[str, EcosystemType] | None = None) -> Scheme:
    """Read a class scheme by name (``raster_inputs/schemes/<name>.toml``) or path; every type it
    names must be an ecosystem type."""
    p = Path(name)
    path = p if p.suffix == ".toml" else schemes_dir() / f"{name}.toml"
    if not path.exists():
        known = ", ".join(sorted(q.stem for q in schemes_dir().glob("*.toml")))
        raise InputError([Problem("unknown-scheme", str(path), "scheme", f"no class scheme '{name}'",
                                  f"use one of: {known}, or give the path of your own scheme TOML")])
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    types = types or load_ecosystem_types()
    meta = raw.get("scheme", {})
    probs = []
    for key in ("name", "product", "source"):
        if not str(meta.get(key, "")).strip():
            probs.append(Problem("bad-scheme", str(path), "scheme", f"[scheme] has no '{key}'",
                                 f"add {key} = \"...\" under [scheme]"))
    codes: dict[str, str] = {}
    labels: dict[str, str] = {}
    for code, entry in raw.get("codes", {}).items():
        t = entry.get("type")
        if t not in types:
            probs.append(Problem("bad-scheme", str(path), f"codes.{code}",
                                 f"type '{t}' is not an ecosystem type",
                                 f"use one of {', '.join(types)} (accounting_rules/ecosystem_types.toml)"))
            continue
        codes[code] = t
        labels[code] = entry.get("label_zh", entry.get("label_en", ""))
    nodata = tuple(str(c) for c in raw.get("nodata", {}).get("codes", []))
    if probs:
        raise InputError(probs)
    return Scheme(meta["name"], meta["product"], meta["source"], codes, labels, nodata, path)
