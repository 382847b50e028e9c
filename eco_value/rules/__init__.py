"""Rule sets: every parameter of the method as data, with unit, source and uncertainty.

A rule set is a TOML file in ``accounting_rules/``. Sections nest; a *parameter* is any table that
has a ``value`` key, and its dotted path is its name (``carbon.species.cunninghamia.wood_density``).
Each parameter must give ``unit`` (a known unit) and ``source`` (a key of ``[sources]`` plus table
or clause); ``uncertainty`` is optional. ``[ruleset] extends = "NAME"`` starts from another rule set
and overrides what it repeats. The content hash covers the resolved parameters and sources, so a
changed value gives a new hash, and every result records the hash it was computed with.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import RuleSetError
from ..resources import data_dir
from ..units import KNOWN_UNITS, is_known


class Uncertainty(BaseModel):
    """95 % interval of a parameter: as a percent half-width, or explicit bounds."""

    model_config = ConfigDict(extra="forbid")
    dist: Literal["normal", "lognormal", "uniform"] = "normal"
    ci95_pct: float | None = None
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _one_form(self):
        if self.ci95_pct is None and (self.low is None or self.high is None):
            raise ValueError("give ci95_pct, or both low and high")
        return self


EVIDENCE = ("exact", "measured", "literature", "placeholder")


class Parameter(BaseModel):
    """One number of the method. ``source`` says where it is printed; ``derivation`` how it was obtained
    when no source prints it (or how a printed value was converted); ``evidence`` its class
    (exact | measured | literature | placeholder), which gives the default uncertainty spread."""

    model_config = ConfigDict(extra="forbid")
    value: float | list[float]
    unit: str
    source: str
    note: str = ""
    derivation: str = ""
    verified: bool = True
    evidence: Literal["exact", "measured", "literature", "placeholder"] | None = None
    uncertainty: Uncertainty | None = None


class EvidenceClass(BaseModel):
    """Default 95 % spread of a parameter of this evidence class when it has no range of its own."""

    model_config = ConfigDict(extra="forbid")
    ci95_pct: float
    dist: Literal["normal", "lognormal", "uniform"] = "normal"
    justification: str


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    citation: str
    year: int | None = None
    url: str = ""


class RuleSetMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    title: str
    version: str = "1"
    extends: str | None = None
    description: str = ""
    price_year: int | None = None
    services: list[str] | None = None


@dataclass
class RuleSet:
    """A resolved rule set: metadata, sources and flat parameters, with a content hash."""

    meta: RuleSetMeta
    sources: dict[str, Source]
    params: dict[str, Parameter]
    files: list[Path] = field(default_factory=list)
    evidence_classes: dict[str, EvidenceClass] = field(default_factory=dict)
    origin: str = ""   # where a rule set not loaded from files comes from ("stored with run <id>")

    @property
    def name(self) -> str:
        return self.meta.name

    def _missing(self, name: str) -> RuleSetError:
        if self.files:
            return RuleSetError(f"rule set '{self.name}' has no parameter '{name}'; add it to {self.files[-1].name} "
                                "with value, unit and source")
        where = self.origin or "stored with a run"
        return RuleSetError(f"rule set '{self.name}' ({where}) has no parameter '{name}': the stored rule set predates "
                            "this parameter, so this release cannot recompute that run with the rule set it was run "
                            "with; run the catalog again with a current rule set (eco-value run --rules NAME)")

    def value(self, name: str) -> float:
        try:
            v = self.params[name].value
        except KeyError:
            raise self._missing(name) from None
        if isinstance(v, list):
            raise RuleSetError(f"parameter '{name}' is a list; use values()")
        return float(v)

    def param(self, name: str) -> Parameter:
        if name not in self.params:
            self.value(name)  # raises the explanatory RuleSetError
        return self.params[name]

    def values(self, name: str) -> list[float]:
        if name not in self.params:
            raise self._missing(name)
        v = self.params[name].value
        return [float(x) for x in (v if isinstance(v, list) else [v])]

    def has(self, name: str) -> bool:
        return name in self.params

    def group(self, prefix: str) -> dict[str, Parameter]:
        """Parameters under ``prefix.`` keyed by the rest of their name."""
        pre = prefix.rstrip(".") + "."
        return {k[len(pre):]: v for k, v in self.params.items() if k.startswith(pre)}

    def uncertainty_range(self, name: str) -> tuple[float, float, str, str]:
        """95 % range of a scalar parameter: ``(low, high, dist, basis)``.

        From its own ``uncertainty`` (basis ``"parameter"``: its sources' min-max or a stated interval),
        else from the default spread of its evidence class (basis ``"evidence:<class>"``).
        """
        p = self.param(name)
        v = float(p.value) if not isinstance(p.value, list) else float("nan")
        u = p.uncertainty
        if u is not None:
            if u.ci95_pct is not None:
                return v * (1 - u.ci95_pct / 100.0), v * (1 + u.ci95_pct / 100.0), u.dist, "parameter"
            return float(u.low), float(u.high), u.dist, "parameter"
        if p.evidence is None:
            raise RuleSetError(f"rule set '{self.name}': parameter '{name}' has neither an uncertainty nor an evidence "
                               f"class; add evidence = \"measured\" | \"literature\" | \"placeholder\" | \"exact\"")
        ec = self.evidence_classes[p.evidence]
        half = abs(v) * ec.ci95_pct / 100.0
        return v - half, v + half, ec.dist, f"evidence:{p.evidence}"

    def canonical(self) -> dict[str, Any]:
        out = {
            "meta": self.meta.model_dump(exclude={"extends"}),
            "sources": {k: v.model_dump() for k, v in sorted(self.sources.items())},
            "params": {k: _dump(v) for k, v in sorted(self.params.items())},
        }
        if self.evidence_classes:
            out["evidence_classes"] = {k: v.model_dump() for k, v in sorted(self.evidence_classes.items())}
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_canonical(cls, data: dict, origin: str = "") -> "RuleSet":
        """Rebuild a rule set from its stored canonical JSON (the run's own copy, not today's file).
        ``origin`` (e.g. ``"stored with run <id>"``) is named in the error for a parameter it lacks."""
        return cls(RuleSetMeta.model_validate(data["meta"]),
                   {k: Source.model_validate(v) for k, v in data["sources"].items()},
                   {k: Parameter.model_validate(v) for k, v in data["params"].items()},
                   evidence_classes={k: EvidenceClass.model_validate(v)
                                     for k, v in data.get("evidence_classes", {}).items()}, origin=origin)

    def with_value(self, name: str, value: float) -> "RuleSet":
        """A copy with one parameter changed (for sensitivity tests and what-ifs)."""
        params = copy.deepcopy(self.params)
        params[name] = params[name].model_copy(update={"value": value})
        return RuleSet(self.meta, self.sources, params, self.files, self.evidence_classes, self.origin)

    def with_uncertainty(self, name: str, **kw) -> "RuleSet":
        params = copy.deepcopy(self.params)
        params[name] = params[name].model_copy(update={"uncertainty": Uncertainty(**kw)})
        return RuleSet(self.meta, self.sources, params, self.files, self.evidence_classes, self.origin)


def _dump(p: Parameter) -> dict:
    """Canonical form of a parameter; the fields added later (derivation, evidence) only when set, so
    the hash of a rule set stored before they existed is unchanged."""
    d = p.model_dump()
    for k in ("derivation", "evidence"):
        if not d[k]:
            del d[k]
    return d


def rules_dir() -> Path:
    return data_dir("accounting_rules")


def load_rules_data(file_name: str) -> dict:
    """A data file of ``accounting_rules/`` that is not a rule set (e.g. ``actual_use.toml``), parsed."""
    path = rules_dir() / file_name
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RuleSetError(f"{path}: cannot read it ({exc}). Fix: reinstall eco-value or repair the file") from None


def available() -> list[str]:
    out = []
    for p in sorted(rules_dir().glob("*.toml")):
        with open(p, "rb") as f:
            meta = tomllib.load(f).get("ruleset", {})
        if meta.get("name") and not meta.get("abstract", False):
            out.append(meta["name"])
    return out


def _find(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    for cand in rules_dir().glob("*.toml"):
        with open(cand, "rb") as f:
            try:
                meta = tomllib.load(f).get("ruleset", {})
            except tomllib.TOMLDecodeError:
                continue
        if meta.get("name") == name or cand.stem == name:
            return cand
    raise RuleSetError(f"no rule set named '{name}' in {rules_dir()}; available: {', '.join(available())}")


def _flatten(tree: dict, prefix: str, out: dict, where: Path) -> None:
    for k, v in tree.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and "value" in v:
            out[name] = v
        elif isinstance(v, dict):
            _flatten(v, name, out, where)
        else:
            raise RuleSetError(f"{where}: '{name}' is a bare value; write it as {{ value = ..., unit = ..., source = ... }}")


def load_rules(name: str = "cn2011-mee2020") -> RuleSet:
    """Load, resolve (``extends``) and check a rule set by name or path."""
    path = _find(name)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(f"{path}: not valid TOML ({exc})") from None
    raw = dict(raw)
    meta_raw = dict(raw.pop("ruleset", {}))
    meta_raw.pop("abstract", None)
    sources_raw = raw.pop("sources", {})
    evidence_raw = raw.pop("evidence_classes", {})
    flat: dict[str, dict] = {}
    _flatten(raw, "", flat, path)
    base: RuleSet | None = None
    if meta_raw.get("extends"):
        base = load_rules(meta_raw["extends"])
    errors: list[str] = []
    try:
        meta = RuleSetMeta.model_validate(meta_raw)
    except ValidationError as exc:
        raise RuleSetError(f"{path}: [ruleset] {exc}") from None
    sources = dict(base.sources) if base else {}
    for k, v in sources_raw.items():
        try:
            sources[k] = Source.model_validate(v)
        except ValidationError as exc:
            errors.append(f"source '{k}': {exc.errors()[0]['msg']}")
    evidence_classes = dict(base.evidence_classes) if base else {}
    for k, v in evidence_raw.items():
        try:
            evidence_classes[k] = EvidenceClass.model_validate(v)
        except ValidationError as exc:
            errors.append(f"evidence class '{k}': {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
    params = dict(base.params) if base else {}
    for k, v in flat.items():
        try:
            p = Parameter.model_validate(v)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(x) for x in e["loc"])
                errors.append(f"parameter '{k}': {loc}: {e['msg']}")
            continue
        if not is_known(p.unit):
            errors.append(f"parameter '{k}': unit '{p.unit}' is not known (known: {', '.join(sorted(KNOWN_UNITS))})")
        src_key = re.split(r"[\s,;]", p.source.strip(), maxsplit=1)[0]
        if not p.source.strip():
            errors.append(f"parameter '{k}': missing source")
        elif src_key not in sources_raw and src_key not in sources:
            errors.append(f"parameter '{k}': source '{src_key}' is not defined under [sources]")
        if p.evidence is not None and p.evidence not in evidence_classes and p.evidence not in evidence_raw:
            errors.append(f"parameter '{k}': evidence class '{p.evidence}' is not defined under [evidence_classes]")
        u = p.uncertainty
        if u is not None and u.low is not None and u.high is not None and not isinstance(p.value, list) \
                and not u.low <= float(p.value) <= u.high:
            errors.append(f"parameter '{k}': value {p.value} lies outside its uncertainty range {u.low}..{u.high}")
        if k in params and params[k].unit != p.unit:
            errors.append(f"parameter '{k}': unit '{p.unit}' differs from '{params[k].unit}' in the base rule set")
        params[k] = p
    if errors:
        raise RuleSetError(f"{path}: {len(errors)} problem(s) in rule set:\n  - " + "\n  - ".join(errors))
    if base and meta.services is None:
        meta = meta.model_copy(update={"services": base.meta.services})
    if base and meta.price_year is None:
        meta = meta.model_copy(update={"price_year": base.meta.price_year})
    return RuleSet(meta, sources, params, (base.files if base else []) + [path], evidence_classes)


def selected_services(rules: RuleSet, registry: dict) -> list:
    """The specs of the services a rule set selects (``[ruleset] services``; all when it lists none),
    in registry order. ``registry``: service key -> module with a ``SPEC`` (``services.SERVICES``,
    passed in so that ``rules/`` imports no engine). A name the registry lacks is refused (it used to
    drop the service silently)."""
    wanted = rules.meta.services
    if wanted is not None:
        unknown = [k for k in wanted if k not in registry]
        if unknown:
            where = rules.files[-1].name if rules.files else (rules.origin or "the stored rule set")
            raise RuleSetError(f"rule set '{rules.name}' ({where}): [ruleset] services lists unknown service(s) "
                               f"{', '.join(repr(k) for k in unknown)}; known services: {', '.join(registry)}. "
                               "Fix: correct the name(s) or remove them from the list")
    return [m.SPEC for k, m in registry.items() if wanted is None or k in wanted]


def declares(rules: RuleSet, name: str) -> bool:
    """Whether the rule set has parameter ``name`` or, for a group prefix, at least one under it."""
    return rules.has(name) or bool(rules.group(name))


def check_declared_parameters(rules: RuleSet, services) -> None:
    """Every parameter (or parameter group) the selected services declare in their ``SPEC`` is in the
    rule set; else one :class:`RuleSetError` naming each service, its missing parameters and the fix."""
    missing = {spec.key: [p for p in spec.parameters if not declares(rules, p)] for spec in services}
    missing = {k: v for k, v in missing.items() if v}
    if not missing:
        return
    if rules.files:
        where, fix = rules.files[-1].name, (f"add each to {rules.files[-1].name} (or a rule set it extends) with value, "
                                            "unit and source, or drop the service from [ruleset] services")
    else:
        where = rules.origin or "stored with a run"
        fix = ("the stored rule set predates these parameters; run the catalog again with a current rule set "
               "(eco-value run --rules NAME)")
    lines = [f"service '{k}' declares parameter{'s' if len(v) > 1 else ''} {', '.join(repr(p) for p in v)}"
             for k, v in missing.items()]
    raise RuleSetError(f"rule set '{rules.name}' ({where}) lacks parameters its selected services read:\n  - "
                       + "\n  - ".join(lines) + f"\nFix: {fix}")


def diff(a: RuleSet, b: RuleSet) -> list[dict]:
    """Parameters that differ between two rule sets (added, removed, changed)."""
    rows = []
    for k in sorted(set(a.params) | set(b.params)):
        pa, pb = a.params.get(k), b.params.get(k)
        if pa is None or pb is None or pa.value != pb.value or pa.unit != pb.unit or pa.source != pb.source:
            rows.append({
                "parameter": k,
                a.name: None if pa is None else pa.value,
                b.name: None if pb is None else pb.value,
                "unit": (pa or pb).unit,
                "change": "added" if pa is None else "removed" if pb is None else "changed",
            })
    return rows
