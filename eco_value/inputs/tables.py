"""Statistics tables of the catalog (provisioning, tourism, ...): read as UTF-8 CSV and checked
against the limits of ``raster_inputs/validation.toml`` — columns, types, signs, units, plausible ranges.

:func:`load_table` is the one way a table is read, by ``validate`` and by the run alike, so what
validation accepted is exactly what the services receive (typed columns, no silent NaN).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import Problem
from ..rules.ecosystem import ecosystem_types
from .limits import ColumnRule, Limits, TableRule, load_limits

# Vocabularies a `vocabulary = "..."` column may name: lists the engine owns.
VOCABULARIES: dict[str, tuple[str, ...]] = {"land_cover": tuple(ecosystem_types().names())}   # ecosystem types
FIRST_DATA_LINE = 2          # line 1 of a CSV is its header
DELIMITERS = (";", "\t", "|")
SHOW = 5                     # offending values listed per problem


def _lines(idx) -> list[int]:
    return [int(i) + FIRST_DATA_LINE for i in idx]


def _examples(values: pd.Series) -> str:
    """'x' (line 2), 'y' (lines 3, 5) ... for the first offending values, with counts."""
    parts = []
    groups: dict[str, list[int]] = {}
    for i, v in values.items():
        groups.setdefault(str(v), []).append(int(i) + FIRST_DATA_LINE)
    for v, lines in list(groups.items())[:SHOW]:
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines[:SHOW]))}" + \
            (f" and {len(lines) - SHOW} more" if len(lines) > SHOW else "")
        parts.append(f"'{v}' ({where})")
    more = len(groups) - SHOW
    return ", ".join(parts) + (f" and {more} more value(s)" if more > 0 else "")


def _read_text(path: Path, key: str, probs: list[Problem]) -> str | None:
    f = str(path)
    if not path.exists():
        probs.append(Problem("missing-file", f, key, "the table file does not exist", "check the path in catalog.toml"))
        return None
    if not path.is_file():
        probs.append(Problem("not-a-file", f, key, "the path is a folder (or a device), not a table file",
                             "point the catalog entry at the CSV file inside it"))
        return None
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        probs.append(Problem("bad-encoding", f, key,
                             f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) "
                             "cannot be decoded (a GBK/GB18030 or Latin-1 export?)",
                             "save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f GB18030 -t UTF-8 in.csv > out.csv`)"))
        return None


def load_table(path: Path, key: str, limits: Limits | None = None,
               region_km2: float | None = None) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read one catalog table and check it; return (typed DataFrame or None, problems).

    Columns with a rule come back typed (float / int / str); bounds that scale with the region
    (``max_per_km2``) are checked only when ``region_km2`` is given.
    """
    limits = limits or load_limits()
    rule = limits.tables.get(key)
    probs: list[Problem] = []
    f = str(path)
    text = _read_text(path, key, probs)
    if text is None:
        return None, probs
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as exc:
        probs.append(Problem("unreadable", f, key, f"not a readable CSV table ({str(exc).strip()})",
                             "export it again as comma-separated UTF-8 CSV with one header line"))
        return None, probs
    df.columns = [str(c).strip() for c in df.columns]
    if rule is None:
        return df, probs
    missing = [c for c, r in rule.columns.items() if r.required and c not in df.columns]
    if missing:
        head = df.columns[0] if len(df.columns) else ""
        delim = next((d for d in DELIMITERS if len(df.columns) == 1 and d in head), None)
        if delim is not None:
            shown = "tab" if delim == "\t" else f"'{delim}'"
            probs.append(Problem("bad-delimiter", f, key,
                                 f"the header is one column '{head[:80]}': the file is separated by {shown}, not ','",
                                 "save it as comma-separated CSV (Excel: 'CSV UTF-8 (comma delimited)')"))
        else:
            for c in missing:
                probs.append(Problem("missing-column", f, f"{key}.{c}",
                                     f"no column '{c}' ({rule.columns[c].type}); the columns are "
                                     f"{', '.join(repr(x) for x in df.columns)}",
                                     f"add a '{c}' column (or rename the column that holds it); "
                                     f"see [tables.{key}] in {limits.path.name}"))
        return None, probs
    probs += _check_rows(df, rule, f, limits)
    raw = df.copy()
    typed: dict[str, pd.Series] = {}
    for name, col in rule.columns.items():
        if name in df.columns:
            series, p = _typed(df[name], col, f, key)
            probs += p
            typed[name] = series
    for name, series in typed.items():
        df[name] = series
    probs += _check_bounds(df, raw, rule, f, key, region_km2, limits)   # rows that did not parse compare as False
    return (None if probs else df), probs


def _check_rows(df, rule: TableRule, f: str, limits: Limits) -> list[Problem]:
    n = len(df)
    lo = rule.min_rows.value if rule.min_rows else 0
    hi = rule.max_rows.value if rule.max_rows else math.inf
    if lo <= n <= hi:
        return []
    b = rule.min_rows if n < lo else rule.max_rows
    want = f"{lo:g}" if lo == hi else f"{lo:g} or more" if hi == math.inf else f"{lo:g} to {hi:g}"
    return [Problem("row-count", f, rule.key, f"the table has {n} rows; it must have {want} ({b.source})",
                    f"give the table {want} data row(s) under its header; the limit is in {limits.path.name}")]


def _typed(s: pd.Series, col: ColumnRule, f: str, key: str) -> tuple[pd.Series, list[Problem]]:
    field = f"{key}.{col.name}"
    s = s.astype(str).str.strip()
    empty = s == ""
    probs = []
    if empty.any():
        probs.append(Problem("missing-value", f, field, f"{int(empty.sum())} empty cell(s) at line(s) "
                             f"{', '.join(map(str, _lines(s.index[empty])[:SHOW]))}", f"fill in every '{col.name}'"))
    if col.type == "text":
        allowed = col.allowed if col.allowed is not None else VOCABULARIES.get(col.vocabulary or "")
        if allowed is not None:
            bad = ~s.isin(allowed) & ~empty
            if bad.any():
                kind = "unknown-unit" if col.name == "unit" else "unknown-value"
                probs.append(Problem(kind, f, field, f"{int(bad.sum())} value(s) not accepted: {_examples(s[bad])}",
                                     f"use one of: {', '.join(allowed)}"))
        return s, probs
    num = pd.to_numeric(s.where(~empty), errors="coerce")
    bad = (num.isna() | ~np.isfinite(num.fillna(0.0))) & ~empty
    if col.type == "integer":
        bad |= num.notna() & np.isfinite(num.fillna(0.0)) & (num.fillna(0.0) % 1 != 0)
    if bad.any():
        probs.append(Problem("bad-value", f, field,
                             f"{int(bad.sum())} value(s) are not finite {'whole ' if col.type == 'integer' else ''}"
                             f"numbers: {_examples(s[bad])}",
                             "write plain numbers with '.' as the decimal point and no thousands separator or unit"))
    return (num.astype("int64") if col.type == "integer" and not probs else num.astype("float64")), probs


def _check_bounds(df, raw, rule: TableRule, f: str, key: str, region_km2: float | None, limits: Limits) -> list[Problem]:
    probs = []
    for name, col in rule.columns.items():
        if name not in df.columns or col.type == "text":
            continue
        x = df[name]
        for kind, kb in col.bounds.items():
            if kind == "max_per_km2" and region_km2 is None:
                continue
            keys = df[kb.by] if kb.by is not None else pd.Series([""] * len(df), index=df.index)
            for k in pd.unique(keys):
                b = kb.for_row(k)
                if b is None:
                    continue
                rows = keys == k
                xs = x[rows]
                if kind == "min":
                    bad, what = xs < b.value, f"below the minimum {b.value:g} {b.unit}"
                elif kind == "greater_than":
                    bad, what = xs <= b.value, f"not above {b.value:g} {b.unit}"
                elif kind == "max":
                    bad, what = xs > b.value, f"above the maximum {b.value:g} {b.unit}"
                else:
                    cap = b.value * region_km2
                    bad, what = xs > cap, (f"above {cap:.4g} = the region's {region_km2:,.1f} km2 x {b.value:g} {b.unit}")
                if bad.any():
                    which = f" (rows with {kb.by} '{k}')" if kb.by is not None else ""
                    probs.append(Problem("out-of-range", f, f"{key}.{name}",
                                         f"{int(bad.sum())} value(s){which} {what}: {_examples(raw.loc[xs.index[bad], name].str.strip())}; "
                                         f"the limit: {b.source}",
                                         f"check the sign, unit and magnitude (e.g. 10^4 t vs t, 万人次 vs visits); "
                                         f"the limits are in {limits.path.name} [tables.{key}.columns.{name}]"))
    return probs
