"""The engine's vocabulary: ecosystem types and forest species groups, with integer ids.

``accounting_rules/ecosystem_types.toml`` and ``accounting_rules/species_groups.toml`` define them.
Every input product is translated to these ids when it is read (``eco_value.inputs.schemes``), so
``carbon/``, ``services/`` and ``accounts/`` only ever see engine ids and names, never a product's
codes. Per-type rule-set parameters are looked up here with the fallback to the parent type: a
level-2 type (e.g. ``bamboo_forest``) uses ``<prefix>.bamboo_forest`` when the rule set gives it,
else ``<prefix>.forest``.

Lookup tables are numpy arrays indexed by the engine id (``table[id]``; 256 entries for uint8), so a
per-chunk ``np.take`` turns a type array into a parameter array.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import RuleSetError
from ..resources import data_dir

NONE_ID = 0        # outside the region / not a type (land cover) or no stand (species)
NODATA_ID = 255    # nodata in every engine-id array
N_IDS = 256        # uint8: lookup tables have this many entries
FOREST = "forest"  # the level-1 type whose sub-types are forest (ecosystem_types.toml)


@dataclass(frozen=True)
class EcosystemType:
    name: str
    id: int
    parent: str | None = None
    label_zh: str = ""
    label_en: str = ""

    @property
    def level1(self) -> str:
        """The level-1 type this type belongs to (itself for a level-1 type)."""
        return self.parent or self.name


class EcosystemTypes:
    """The ecosystem types of ``ecosystem_types.toml`` (file order is kept)."""

    def __init__(self, types: list[EcosystemType], source: Path | None = None):
        self.types = types
        self.source = source
        self.by_name = {t.name: t for t in types}
        self.by_id = {t.id: t for t in types}
        # dense positions for per-type sums (0 = none; then file order): small (zones, types) matrices
        self.positions = {t.name: i + 1 for i, t in enumerate(types)}
        self.n_positions = len(types) + 1
        lut = np.full(N_IDS, self.n_positions, dtype=np.int64)   # unknown ids and nodata: outside
        lut[NONE_ID] = 0
        for t in types:
            lut[t.id] = self.positions[t.name]
        self.position_lut = lut

    def __iter__(self):
        return iter(self.types)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def __getitem__(self, name: str) -> EcosystemType:
        return self._get(name)

    def is_forest(self, name: str) -> bool:
        """True for ``forest`` and every type whose parent is ``forest`` (bamboo, sparse forest, ...);
        False for an unknown or empty name."""
        t = self.by_name.get(name)
        return t is not None and t.level1 == FOREST

    def names(self) -> list[str]:
        return [t.name for t in self.types]

    def level1(self) -> list[EcosystemType]:
        return [t for t in self.types if t.parent is None]

    def id(self, name: str) -> int:
        return self._get(name).id

    def _get(self, name: str) -> EcosystemType:
        try:
            return self.by_name[name]
        except KeyError:
            raise RuleSetError(f"'{name}' is not an ecosystem type of {self.source or 'ecosystem_types.toml'}; "
                               f"known: {', '.join(self.names())}") from None

    def ids_of(self, names) -> np.ndarray:
        """Id per type name (``None`` / ``""`` → NONE_ID), e.g. for the types a scheme gave vector rows."""
        return np.array([self._get(n).id if n else NONE_ID for n in names], dtype=np.int64)

    def ids_under(self, *names: str) -> list[int]:
        """Ids of the named types and of all their sub-types (``forest`` → forest and every forest type)."""
        for n in names:
            self._get(n)
        wanted = set(names)
        return [t.id for t in self.types if t.name in wanted or t.parent in wanted]

    def position_names(self) -> list[str]:
        """Type name of each dense position (position 0 = ``none``)."""
        return ["none"] + self.names()

    # -- rule-set parameters keyed by type ----------------------------------------------------------
    def param_name(self, rules, prefix: str, name: str, suffix: str = "") -> str | None:
        """The parameter a type uses: its own ``prefix.name[.suffix]``, else its parent's, else None."""
        t = self._get(name)
        for key in (t.name, t.parent):
            if key is None:
                continue
            full = f"{prefix}.{key}" + (f".{suffix}" if suffix else "")
            if rules.has(full):
                return full
        return None

    def required_param(self, rules, prefix: str, name: str, suffix: str = "") -> str:
        p = self.param_name(rules, prefix, name, suffix)
        if p is None:
            want = f"{prefix}.{self._get(name).level1}" + (f".{suffix}" if suffix else "")
            rules.value(want)   # raises the rule set's explanatory error
        return p

    def table(self, rules, prefix: str, default: float = 0.0) -> np.ndarray:
        """Lookup table id → value of the per-type parameter group ``prefix`` (parent fallback).

        Types the group does not cover (neither themselves nor their parent) get ``default``.
        """
        table = np.full(N_IDS, float(default))
        table[NODATA_ID] = 0.0
        table[NONE_ID] = 0.0
        for t in self.types:
            p = self.param_name(rules, prefix, t.name)
            if p is not None:
                table[t.id] = rules.value(p)
        return table

    def ids_with(self, rules, prefix: str) -> list[int]:
        """Ids of the types that have the per-type parameter ``prefix`` (their own or their parent's)."""
        return [t.id for t in self.types if self.param_name(rules, prefix, t.name) is not None]

    def check_rules(self, rules, prefix: str) -> list[str]:
        """Keys of a per-type group that are not ecosystem types (a misspelt type is silently unused)."""
        return sorted(k.split(".")[0] for k in rules.group(prefix) if k.split(".")[0] not in self.by_name)


@dataclass(frozen=True)
class SpeciesGroup:
    name: str
    id: int
    label_zh: str = ""
    label_en: str = ""


class SpeciesGroups:
    """The forest species groups of ``species_groups.toml`` (file order = Monte Carlo draw order)."""

    def __init__(self, groups: list[SpeciesGroup], source: Path | None = None):
        self.groups = groups
        self.source = source
        self.by_name = {g.name: g for g in groups}
        self.n_ids = max((g.id for g in groups), default=0) + 1   # rows of per-species sums

    def __iter__(self):
        return iter(self.groups)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def id(self, name: str) -> int:
        try:
            return self.by_name[name].id
        except KeyError:
            raise RuleSetError(f"'{name}' is not a species group of {self.source or 'species_groups.toml'}; "
                               f"known: {', '.join(self.by_name)}") from None

    def _of_rules(self, rules, prefix: str, probe: str) -> list[SpeciesGroup]:
        keys = {k.split(".")[0] for k in rules.group(prefix)}
        unknown = sorted(keys - set(self.by_name))
        if unknown:
            raise RuleSetError(f"rule set '{rules.name}' gives {prefix}.{unknown[0]} but '{unknown[0]}' is not a species "
                               f"group; add it to {self.source or 'accounting_rules/species_groups.toml'} with an id "
                               f"(unknown: {', '.join(unknown)})")
        return [g for g in self.groups if rules.has(f"{prefix}.{g.name}.{probe}")]

    def volume_groups(self, rules) -> list[SpeciesGroup]:
        """Groups whose biomass comes from stem volume (``carbon.species.<group>``)."""
        return self._of_rules(rules, "carbon.species", "wood_density")

    def per_area_groups(self, rules) -> list[SpeciesGroup]:
        """Groups with a per-area biomass (``carbon.per_area.<group>``: bamboo, shrub, ...)."""
        return self._of_rules(rules, "carbon.per_area", "biomass")


def _read(path: Path, section: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(f"{path}: not valid TOML ({exc})") from None
    items = raw.get(section)
    if not isinstance(items, dict) or not items:
        raise RuleSetError(f"{path}: no [{section}.<name>] entries")
    return items


def _check_ids(path: Path, items: dict, what: str) -> list[str]:
    errors, seen = [], {}
    for name, d in items.items():
        i = d.get("id")
        if not isinstance(i, int) or not NONE_ID < i < NODATA_ID:
            errors.append(f"{what} '{name}': id {i!r} must be an integer 1..{NODATA_ID - 1}")
        elif i in seen:
            errors.append(f"{what} '{name}': id {i} is already used by '{seen[i]}'")
        else:
            seen[i] = name
    return errors


@lru_cache(maxsize=8)
def load_ecosystem_types(path: str | None = None) -> EcosystemTypes:
    p = Path(path) if path else data_dir("accounting_rules") / "ecosystem_types.toml"
    items = _read(p, "types")
    errors = _check_ids(p, items, "type")
    for name, d in items.items():
        par = d.get("parent")
        if par is not None and (par not in items or items[par].get("parent") is not None):
            errors.append(f"type '{name}': parent '{par}' is not a level-1 type of this file")
        extra = set(d) - {"id", "parent", "label_zh", "label_en"}
        if extra:
            errors.append(f"type '{name}': unknown field(s) {sorted(extra)}")
    if errors:
        raise RuleSetError(f"{p}: {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return EcosystemTypes([EcosystemType(n, d["id"], d.get("parent"), d.get("label_zh", ""), d.get("label_en", ""))
                           for n, d in items.items()], p)


@lru_cache(maxsize=8)
def load_species_groups(path: str | None = None) -> SpeciesGroups:
    p = Path(path) if path else data_dir("accounting_rules") / "species_groups.toml"
    items = _read(p, "groups")
    errors = _check_ids(p, items, "species group")
    if errors:
        raise RuleSetError(f"{p}: {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
    return SpeciesGroups([SpeciesGroup(n, d["id"], d.get("label_zh", ""), d.get("label_en", "")) for n, d in items.items()], p)


def ecosystem_types() -> EcosystemTypes:
    """The engine's ecosystem types (cached)."""
    return load_ecosystem_types(None)


def species_groups() -> SpeciesGroups:
    """The engine's forest species groups (cached)."""
    return load_species_groups(None)
