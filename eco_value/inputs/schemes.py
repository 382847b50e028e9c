"""Class schemes: an input product's codes crosswalked to the engine's vocabulary, as data.

A scheme is a TOML file in ``raster_inputs/schemes/`` (format in that folder's README)::

    [scheme]
    name = "clcd"                 # what a catalog layer's ``scheme = "..."`` names (case-insensitive)
    product = "..."
    source = "..."                # the product's class table
    vocabulary = "ecosystem_type" # or "species_group" (stand layers); default ecosystem_type
    [codes."2"]
    type = "forest"               # an ecosystem type of accounting_rules/ecosystem_types.toml
    label = "Forest 林地"          # optional (or label_zh / label_en)
    [nodata]                      # optional: codes that mean "no data" in this product
    codes = [0]

Species schemes write ``group = "<species group>"`` instead of ``type`` (``"none"`` = no stand).
:meth:`Scheme.translate` turns a chunk of product codes into engine ids (uint8; unknown codes → 0,
nodata → 255) with one lookup per chunk; the readers apply it lazily, so the engine never sees a
product's code. Vector readers (小班 DI_LEI, 三调 DLBM) use :meth:`Scheme.types_of` per attribute value:
codes are compared as text after :func:`normalise_code` (``30100.0`` → ``"30100"``), zero-padded to the
scheme's code width when all its codes have one width (a 6-digit DI_LEI stored as the number ``30100``
finds ``"030100"``); codes the scheme does not map are refused with their counts.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError, Problem
from ..resources import data_dir
from ..rules.ecosystem import NODATA_ID, NONE_ID, ecosystem_types, species_groups

VOCABULARIES = ("ecosystem_type", "species_group")
NONE_NAME = "none"


@dataclass(frozen=True)
class Scheme:
    name: str
    product: str
    source: str
    vocabulary: str
    codes: dict[str, str]                 # product code (as written) → engine name
    labels: dict[str, str] = field(default_factory=dict)
    nodata_codes: tuple[str, ...] = ()
    path: Path | None = None

    # -- codes ------------------------------------------------------------------------------------
    def int_codes(self) -> dict[int, str]:
        """Raster codes (integers) → engine name; codes that are not integers (vector-only) are left out."""
        return {int(c): n for c, n in self.codes.items() if _is_int(c)}

    def engine_ids(self) -> dict[int, int]:
        """Raster code → engine id."""
        vocab = ecosystem_types() if self.vocabulary == "ecosystem_type" else species_groups()
        return {c: (NONE_ID if n == NONE_NAME else vocab.id(n)) for c, n in self.int_codes().items()}

    def known_codes(self) -> list[int]:
        """Every integer code the product may hold: mapped codes and declared nodata codes."""
        return sorted(set(self.int_codes()) | {int(c) for c in self.nodata_codes if _is_int(c)})

    def __iter__(self):  # ``sorted(scheme)`` → the known codes (validation)
        return iter(self.known_codes())

    def __contains__(self, code) -> bool:
        return int(code) in set(self.known_codes())

    def code_of(self, name: str) -> int:
        """The (first) raster code of an engine name (for writers of this product, e.g. the pilot)."""
        for c, n in self.int_codes().items():
            if n == name:
                return c
        raise KeyError(f"scheme '{self.name}' has no code for '{name}'")

    # -- vector attributes (codes as text) ------------------------------------------------------------
    @property
    def width(self) -> int | None:
        """The length of every code, when all codes have the same length (else None)."""
        widths = {len(c) for c in self.codes}
        return widths.pop() if len(widths) == 1 else None

    def canonical(self, value) -> str:
        """A value read from a file as this scheme writes the code (zero-padded to the code width)."""
        code = normalise_code(value)
        if not code or code in self.codes or code in self.nodata_codes:
            return code
        w = self.width
        if w and code.isdigit() and len(code) < w and code.zfill(w) in self.codes:
            return code.zfill(w)
        return code

    def types_of(self, values, *, file: str, field_name: str) -> list[str | None]:
        """Engine name per attribute value (``None`` for nodata / empty); unmapped codes are refused
        with every offending code and its count."""
        codes = [self.canonical(v) for v in values]
        bad = Counter(c for c in codes if c and c not in self.codes and c not in self.nodata_codes)
        if bad:
            listed = ", ".join(f"'{c}' ({n}×)" for c, n in sorted(bad.items()))
            key = "type" if self.vocabulary == "ecosystem_type" else "group"
            raise InputError([Problem(
                "unmapped-code", file, field_name,
                f"{sum(bad.values())} value(s) of {field_name} have codes that class scheme '{self.name}' "
                f"does not map: {listed}",
                f"add each code to {self.path or 'the scheme'} as [codes.\"CODE\"] {key} = \"<{self.vocabulary}>\" "
                f"(or list it under [nodata] codes), or choose the scheme that matches the data")])
        return [self.codes[c] if c in self.codes else None for c in codes]

    # -- translation ----------------------------------------------------------------------------------
    def translate(self, codes: np.ndarray, source_nodata=None) -> np.ndarray:
        """Product codes → engine ids (uint8): unknown codes → 0, nodata (file's and scheme's) → 255."""
        a = np.asarray(codes)
        if a.dtype.kind in "ub" and a.dtype.itemsize <= 2:
            return np.take(self._dense_lut(a.dtype.str, _nodata_key(source_nodata)), a)
        ids = self.engine_ids()
        keys = np.array(sorted(ids), dtype=np.float64 if a.dtype.kind == "f" else np.int64)
        vals = np.array([ids[int(k)] for k in keys], dtype=np.uint8)
        out = np.full(a.shape, NONE_ID, dtype=np.uint8)
        if keys.size:
            pos = np.clip(np.searchsorted(keys, a), 0, keys.size - 1)
            hit = keys[pos] == a
            out[hit] = vals[pos[hit]]
        nod = np.isin(a, [int(c) for c in self.nodata_codes if _is_int(c)])
        if source_nodata is not None:
            nod |= (a == source_nodata) if not np.isnan(source_nodata) else np.isnan(a)
        if a.dtype.kind == "f":
            nod |= np.isnan(a)
        out[nod] = NODATA_ID
        return out

    @lru_cache(maxsize=16)  # noqa: B019 - schemes are few and immutable
    def _dense_lut(self, dtype: str, source_nodata) -> np.ndarray:
        dt = np.dtype(dtype)
        lut = np.full(1 << (8 * dt.itemsize), NONE_ID, dtype=np.uint8)
        for c, i in self.engine_ids().items():
            if 0 <= c < lut.size:
                lut[c] = i
        for c in self.nodata_codes:
            if _is_int(c) and 0 <= int(c) < lut.size:
                lut[int(c)] = NODATA_ID
        if source_nodata is not None and 0 <= source_nodata < lut.size:
            lut[int(source_nodata)] = NODATA_ID
        return lut

    def __hash__(self):
        return hash((self.name, self.path))


def _nodata_key(v):
    if v is None:
        return None
    v = float(v)
    return None if np.isnan(v) else (int(v) if v.is_integer() else v)


def normalise_code(value) -> str:
    """A code read from a file as text: strip blanks, drop a float's ``.0``; missing → ``""``."""
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


def _is_int(code: str) -> bool:
    return str(code).lstrip("-").isdigit()


def schemes_dir() -> Path:
    return data_dir("raster_inputs") / "schemes"


def _problem(path: Path, field_: str, what: str, fix: str) -> InputError:
    return InputError([Problem("bad-scheme", str(path), field_, what, fix)])


def read_scheme(path: str | Path) -> Scheme:
    """Read and check one scheme file; every engine name must exist in the vocabulary."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise _problem(path, "scheme", f"not valid TOML ({exc})", "fix the TOML syntax at the position given") from None
    meta = raw.get("scheme", {})
    vocab_name = meta.get("vocabulary", "ecosystem_type")
    if vocab_name not in VOCABULARIES:
        raise _problem(path, "scheme.vocabulary", f"'{vocab_name}' is not a vocabulary", f"use one of {VOCABULARIES}")
    key = "type" if vocab_name == "ecosystem_type" else "group"
    vocab = ecosystem_types() if vocab_name == "ecosystem_type" else species_groups()
    codes, labels, ints = {}, {}, {}
    bad = [f"[scheme] has no `{k} = \"...\"`" for k in ("product", "source") if not str(meta.get(k, "")).strip()]
    for code, d in raw.get("codes", {}).items():
        if not isinstance(d, dict) or key not in d:
            bad.append(f"code {code!r} has no `{key} = \"...\"`")
            continue
        name = d[key]
        if name != NONE_NAME and name not in vocab:
            bad.append(f"code {code!r} → {key} '{name}' is not in the engine's vocabulary")
            continue
        if _is_int(code):
            if int(code) in ints:
                bad.append(f"codes {ints[int(code)]!r} and {code!r} are the same integer")
            ints[int(code)] = code
        codes[str(code)] = name
        label = d.get("label") or d.get("label_zh") or d.get("label_en")
        if label:
            labels[str(code)] = str(label)
    if not codes:
        bad.append("no [codes.\"<code>\"] entries")
    if bad:
        raise _problem(path, "codes", f"{len(bad)} problem(s): " + "; ".join(bad[:10]),
                       f"cite the product and its code list under [scheme]; map every code to a {key} of "
                       f"accounting_rules/{'ecosystem_types' if key == 'type' else 'species_groups'}.toml")
    nodata = tuple(str(c) for c in raw.get("nodata", {}).get("codes", []))
    return Scheme(name=str(meta.get("name", path.stem)), product=str(meta.get("product", "")),
                  source=str(meta.get("source", "")), vocabulary=vocab_name, codes=codes, labels=labels,
                  nodata_codes=nodata, path=path)


@lru_cache(maxsize=1)
def _all_schemes() -> dict[str, Path]:
    out = {}
    for p in sorted(schemes_dir().glob("*.toml")):
        try:
            with open(p, "rb") as f:
                name = tomllib.load(f).get("scheme", {}).get("name", p.stem)
        except tomllib.TOMLDecodeError:
            name = p.stem
        out[str(name).lower()] = p
        out.setdefault(p.stem.lower(), p)
    return out


def scheme_names() -> list[str]:
    return sorted({read_scheme(p).name for p in set(_all_schemes().values())})


def has_scheme(name: str) -> bool:
    return str(name).lower() in _all_schemes()


@lru_cache(maxsize=64)
def load_scheme(name: str | Path, vocabulary: str | None = None) -> Scheme:
    """A scheme by name (case-insensitive: a catalog's old ``classes = "CLCD"`` finds ``clcd``) or by path.

    ``vocabulary`` (``"ecosystem_type"`` / ``"species_group"``): refuse a scheme of the other vocabulary
    (a species scheme given where land classes are read)."""
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        scheme = read_scheme(p)
    else:
        path = _all_schemes().get(str(name).lower())
        if path is None:
            raise InputError([Problem("unknown-class-scheme", str(schemes_dir()), str(name),
                                      f"class scheme '{name}' is not known",
                                      f"use one of {scheme_names()} or add raster_inputs/schemes/{str(name).lower()}.toml")])
        scheme = read_scheme(path)
    if vocabulary is not None and scheme.vocabulary != vocabulary:
        raise InputError([Problem("wrong-class-scheme", str(scheme.path), str(name),
                                  f"class scheme '{scheme.name}' maps codes to {scheme.vocabulary}s, "
                                  f"but {vocabulary}s are read here",
                                  f"choose a scheme with vocabulary = \"{vocabulary}\"")])
    return scheme


class _SchemeRegistry(dict):
    """``name → Scheme``, loaded on first use (``name in SCHEMES``, ``SCHEMES[name]``)."""

    def __contains__(self, name) -> bool:
        return name is not None and has_scheme(name)

    def __getitem__(self, name) -> Scheme:
        return load_scheme(name)

    def __iter__(self):
        return iter(scheme_names())

    def __len__(self):
        return len(scheme_names())

    def keys(self):
        return scheme_names()


SCHEMES = _SchemeRegistry()
