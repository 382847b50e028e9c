"""Crediting methodologies as data (``accounting_rules/methodologies/*.toml``): eligibility per parcel,
and the deductions from removals to whole-tonne credits over a monitoring period.

Pure functions: nothing here touches the store, rasters or the screen. A parcel's *facts* (areas by
land-cover history, declared attributes, the run's removals) are gathered elsewhere
(``eco_value.exchange.projects``); here each eligibility rule becomes one :class:`Check` line with
pass/fail and a reason a verifier can read, and :func:`credit_parcel_vintages` turns removals into
credits, deductions and a remainder that add up to the removals exactly.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from statistics import NormalDist

from ..carbon.uncertainty import Z95
from ..errors import EcoValueError
from ..resources import data_dir

KINDS = ("afforestation", "forest_management")
M2_PER_HA = 10_000.0


class MethodologyError(EcoValueError):
    """A methodology file is malformed or unknown, or a project cannot be credited under it."""


@dataclass(frozen=True)
class Param:
    value: float
    unit: str
    source: str
    verified: bool


@dataclass
class Methodology:
    id: str
    code: str
    version: str
    title: str
    title_zh: str
    kind: str
    programme: str
    registry_of_origin: str
    cad_trust_project_type: str
    cad_trust_sector: str
    credits: str
    credits_zh: str
    sources: dict[str, dict]
    eligibility: dict[str, dict]
    baseline: dict
    leakage_share: Param
    uncertainty_confidence: Param
    uncertainty_precision: Param
    buffer: dict
    crediting_min_years: Param
    crediting_max_years: Param
    path: str = ""

    def param(self, rule: str, name: str) -> Param:
        return _param(self.eligibility[rule][name], f"eligibility.{rule}.{name}", self.path)

    @property
    def buffer_share(self) -> float:
        if self.buffer.get("kind") == "none":
            return 0.0
        return _param(self.buffer["share"], "buffer.share", self.path).value

    def parameters(self) -> list[dict]:
        """Every parameter with unit, source and verified flag (for explain and the calculation package)."""
        out = []
        for rule, d in self.eligibility.items():
            for k, v in d.items():
                if isinstance(v, dict) and "value" in v:
                    p = _param(v, k, self.path)
                    out.append({"name": f"eligibility.{rule}.{k}", **asdict(p)})
        for name, p in (("leakage.share", self.leakage_share), ("uncertainty.confidence", self.uncertainty_confidence),
                        ("uncertainty.precision", self.uncertainty_precision),
                        ("crediting_period.min_years", self.crediting_min_years),
                        ("crediting_period.max_years", self.crediting_max_years)):
            out.append({"name": name, **asdict(p)})
        out.append({"name": "baseline.kind", "value": self.baseline.get("kind"), "unit": "", "source": self.baseline.get("source", ""),
                    "verified": bool(self.baseline.get("verified", False))})
        out.append({"name": "buffer", "value": self.buffer_share if self.buffer.get("kind") != "none" else "none", "unit": "fraction",
                    "source": self.buffer.get("source", ""), "verified": bool(self.buffer.get("verified", False))})
        return out


def _param(d, name: str, where: str) -> Param:
    if not isinstance(d, dict) or not {"value", "unit", "source", "verified"} <= set(d):
        raise MethodologyError(f"{where}: parameter '{name}' needs value, unit, source and verified (got {d!r})")
    return Param(d["value"], str(d["unit"]), str(d["source"]), bool(d["verified"]))


def methodologies_dir() -> Path:
    return data_dir("accounting_rules") / "methodologies"


def available() -> list[str]:
    return sorted(p.stem for p in methodologies_dir().glob("*.toml"))


def load_methodology(name: str) -> Methodology:
    """Load ``accounting_rules/methodologies/NAME.toml`` (case-insensitive) and check its structure."""
    p = methodologies_dir() / f"{name.lower()}.toml"
    if not p.exists():
        raise MethodologyError(f"unknown methodology '{name}'; available: {', '.join(available())} "
                               f"(files in {methodologies_dir()})")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise MethodologyError(f"{p}: not valid TOML ({exc})") from None
    where = str(p)
    try:
        m = raw["methodology"]
        kind = m["kind"]
        if kind not in KINDS:
            raise MethodologyError(f"{where}: methodology.kind '{kind}' is not one of {KINDS}")
        sources = raw.get("sources", {})
        meth = Methodology(
            id=m["id"], code=m["code"], version=m["version"], title=m["title"], title_zh=m["title_zh"], kind=kind,
            programme=m["programme"], registry_of_origin=m["registry_of_origin"],
            cad_trust_project_type=m["cad_trust_project_type"], cad_trust_sector=m["cad_trust_sector"],
            credits=" ".join(m["credits"].split()), credits_zh=m["credits_zh"], sources=sources,
            eligibility=raw["eligibility"], baseline=raw["baseline"],
            leakage_share=_param(raw["leakage"]["share"], "leakage.share", where),
            uncertainty_confidence=_param(raw["uncertainty"]["confidence"], "uncertainty.confidence", where),
            uncertainty_precision=_param(raw["uncertainty"]["precision"], "uncertainty.precision", where),
            buffer=raw["buffer"],
            crediting_min_years=_param(raw["crediting_period"]["min_years"], "crediting_period.min_years", where),
            crediting_max_years=_param(raw["crediting_period"]["max_years"], "crediting_period.max_years", where),
            path=where)
    except KeyError as exc:
        raise MethodologyError(f"{where}: missing key {exc}") from None
    if meth.id != p.stem:
        raise MethodologyError(f"{where}: methodology.id '{meth.id}' differs from the file name '{p.stem}'")
    if meth.baseline.get("kind") not in ("zero", "declared"):
        raise MethodologyError(f"{where}: baseline.kind must be 'zero' or 'declared', not {meth.baseline.get('kind')!r}")
    if meth.buffer.get("kind") not in ("none", "share"):
        raise MethodologyError(f"{where}: buffer.kind must be 'none' or 'share', not {meth.buffer.get('kind')!r}")
    # every cited source key must be defined
    cited = [p.source for p in (meth.leakage_share, meth.uncertainty_confidence, meth.uncertainty_precision,
                                meth.crediting_min_years, meth.crediting_max_years)]
    cited += [str(d.get("source", "")) for d in meth.eligibility.values()]
    cited += [str(d[k]["source"]) for d in meth.eligibility.values() for k in d if isinstance(d[k], dict) and "source" in d[k]]
    cited += [str(meth.baseline.get("source", "")), str(meth.buffer.get("source", ""))]
    for c in cited:
        key = c.split(" ", 1)[0].rstrip(";,")
        if key and key not in sources:
            raise MethodologyError(f"{where}: source '{key}' is cited but not defined under [sources]")
    return meth


# --- parcel facts and eligibility ------------------------------------------------------------------------
@dataclass
class ParcelFacts:
    """What the eligibility rules need to know about one parcel (areas in m², removals in t CO2e/yr)."""

    parcel_id: str
    area_m2: float
    snapshot_years: list[int]                        # land-cover years available (t0 …, t1, t2)
    t1: int
    t2: int
    forest_m2: dict[int, float]                      # forest area of the parcel at each snapshot
    afforested_m2: float                             # non-forest at t1, forest at t2
    afforested_forest_m2: dict[int, float]           # of that land: forest at each snapshot before t1
    afforested_wetland_m2: float                     # of that land: wetland at any snapshot up to t1
    removals: dict[str, float]                       # component -> t CO2e/yr (afforestation, forest_management, net)
    ci95: tuple[float, float]                        # 95 % interval of the parcel's net sink, t CO2e/yr
    holder_id: str = ""
    tenure_certificate: str = ""
    forest_category: str = ""                        # 林种
    vegetation: str = ""                             # tree | bamboo | shrub (declared)
    planting_year: int | None = None                 # 造林年份 (declared by the inventory)
    planted_area_m2: float | None = None             # 造林面积 of the plot (declared)
    wetland_declared: bool = False
    other_programme: str = "none"
    baseline_tco2e_per_yr: float | None = None       # business-as-usual removals (declared)
    tenure_holder: str = ""                          # 林权 holder(s) of the parcel's 小班 (catalog tenure records)
    use_right_start: str = ""                        # ISO date: latest start of the parcel's use-right certificates
    use_right_end: str = ""                          # ISO date: earliest end of them ("" = not known)
    tenure_area_mu: float | None = None              # certified area, 亩
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    reason: str


def _ha(m2: float) -> str:
    return f"{m2 / M2_PER_HA:,.2f} ha"


def eligibility(meth: Methodology, f: ParcelFacts, start: date, end: date | None = None) -> list[Check]:
    """One :class:`Check` per rule of the methodology, in the order of the methodology file; ``end`` is
    the crediting period's end (rules about the whole crediting period need it)."""
    out = []
    for rule in meth.eligibility:
        fn = _RULES.get(rule) or _PERIOD_RULES.get(rule)
        if fn is None:
            raise MethodologyError(f"{meth.path}: eligibility rule '{rule}' is not known to eco-value "
                                   f"(known: {', '.join([*_RULES, *_PERIOD_RULES])})")
        out.append(Check(rule, *(fn(meth, f, start, end) if rule in _PERIOD_RULES else fn(meth, f, start))))
    return out


USE_RIGHT_ACTIONS = ("refuse", "flag")
FLAG = "flagged: "   # the reason of a passed check that an exchange should see (use_right with action "flag")


def _use_right(meth, f: ParcelFacts, start: date, end: date | None):
    r = meth.eligibility["use_right"]
    action = r.get("action", "refuse")
    if action not in USE_RIGHT_ACTIONS:
        raise MethodologyError(f"{meth.path}: eligibility.use_right.action '{action}' is not one of {USE_RIGHT_ACTIONS}")
    if not f.use_right_end:
        if r.get("require_dates", False):
            return False, "no use-right dates (林地使用权起止时间) for the parcel: give the catalog's tenure records"
        return True, "no use-right end recorded (no tenure records in the run's catalog): not checked"
    ends = date.fromisoformat(f.use_right_end)
    if end is None or ends >= end:
        return True, f"use right (林地使用权) to {ends.isoformat()} covers the crediting period" + (
            f" (to {end.isoformat()})" if end else "")
    why = (f"the use right (林地使用权, {f.tenure_certificate or 'certificate not given'}) ends {ends.isoformat()}, before the "
           f"crediting period ends ({end.isoformat()}): removals after {ends.isoformat()} are not the holder's to sell")
    return (False, why) if action == "refuse" else (True, FLAG + why)


def _land_history(meth, f: ParcelFacts, start: date):
    n = int(meth.param("land_history", "non_forest_years_before_start").value)
    tol = meth.param("land_history", "tolerance_share").value
    if f.afforested_m2 <= 0:
        forest_t1 = f.forest_m2.get(f.t1, 0.0)
        if forest_t1 > 0:
            return False, (f"forest remaining forest: {_ha(forest_t1)} of the parcel was forest in {f.t1} and no land turned "
                           f"from non-forest to forest by {f.t2}; {meth.code} credits afforestation of non-forest land only")
        return False, f"no land turned from non-forest to forest between {f.t1} and {f.t2}: nothing was afforested"
    if f.planting_year is not None and f.planting_year < start.year:
        return False, (f"afforested in {f.planting_year} (declared planting year), {start.year - f.planting_year} year(s) before "
                       f"the start {start.isoformat()}: the land must be non-forest for at least {n} years before the start")
    limit = start.year - n
    early = [y for y in f.snapshot_years if y <= limit]
    if not early:
        return False, (f"cannot be established: no land-cover snapshot in or before {limit} ({n} years before the start "
                       f"{start.isoformat()}); snapshots: {', '.join(map(str, f.snapshot_years))}. Add a t0 land cover to the catalog")
    y0 = max(early)
    for y in sorted(y for y in f.snapshot_years if y0 <= y < start.year or y == y0):
        share = f.afforested_forest_m2.get(y, 0.0) / f.afforested_m2
        if share > tol:
            return False, (f"{share:.0%} of the afforested land ({_ha(f.afforested_forest_m2[y])}) was forest in {y}: non-forest "
                           f"for {n} years before the start {start.isoformat()} (since {limit}) cannot be shown "
                           f"(cleared and replanted?); tolerance {tol:.0%}")
    return True, (f"{_ha(f.afforested_m2)} afforested between {f.t1} and {f.t2} was non-forest in "
                  f"{', '.join(str(y) for y in f.snapshot_years if y <= f.t1 and y >= y0)} (≥ {n} years before the start {start.year})")


def _plot_area(meth, f: ParcelFacts, start: date):
    last_early = int(meth.param("plot_area", "early_start_last_year").value)
    need = meth.param("plot_area", "min_m2_early" if start.year <= last_early else "min_m2").value
    plot = f.planted_area_m2 if f.planted_area_m2 is not None else f.afforested_m2
    what = "declared planted area" if f.planted_area_m2 is not None else "afforested area"
    rule = f"≥ {need:,.0f} m² for a project started in {start.year}" + (f" (in or before {last_early})" if start.year <= last_early else "")
    if plot < need:
        return False, f"plot of {plot:,.0f} m² ({what}) is below the minimum: {rule}"
    return True, f"plot of {plot:,.0f} m² ({what}) {rule}"


def _wetland(meth, f: ParcelFacts, start: date):
    if f.wetland_declared:
        return False, "the parcel is declared wetland (湿地) in the land-use survey; wetland is not eligible"
    mx = meth.param("wetland", "max_wetland_share").value
    if f.afforested_m2 > 0:
        share = f.afforested_wetland_m2 / f.afforested_m2
        if share > mx:
            return False, f"{share:.0%} of the afforested land ({_ha(f.afforested_wetland_m2)}) was wetland before planting (limit {mx:.0%})"
        return True, f"afforested land was not wetland ({share:.0%} wetland pixels, limit {mx:.0%}) and none is declared"
    return True, "no wetland declared"


def _forest_category(meth, f: ParcelFacts, start: date):
    excl = meth.eligibility["forest_category"]["excluded"]
    cat = f.forest_category.strip()
    if cat and any(e.lower() in cat.lower() for e in excl):
        return False, f"林种 '{cat}' is excluded ({', '.join(excl)})"
    return True, f"林种 '{cat or 'not declared'}' is not excluded"


def _vegetation(meth, f: ParcelFacts, start: date):
    covered = meth.eligibility["vegetation"]["covered"]
    v = f.vegetation.strip().lower()
    if not v:
        return True, f"forest land cover in {f.t2} (trees); covered: {', '.join(covered)}"
    if v not in covered:
        return False, f"vegetation '{f.vegetation}' is not covered (only {', '.join(covered)})"
    return True, f"vegetation '{v}' is covered"


def _tenure(meth, f: ParcelFacts, start: date):
    c = f.tenure_certificate.strip()
    if not c:
        return False, "no tenure evidence: no forest-right or real-estate certificate number (林权证号) for the parcel"
    return True, f"tenure certificate {c} (holder {f.holder_id or 'unknown'})"


def _other_programme(meth, f: ParcelFacts, start: date):
    o = (f.other_programme or "none").strip()
    if o.lower() not in ("", "none"):
        return False, f"declared in another programme: {o} (double counting)"
    return True, "not declared in another programme"


def _net_removal(meth, f: ParcelFacts, start: date):
    comp = meth_component(meth)
    r = f.removals.get(comp, 0.0)
    net = f.removals.get("net", r)
    if r <= 0:
        return False, f"no removals to credit: {comp} {r:,.3f} t CO2e/yr over {f.t1}-{f.t2}"
    if net <= 0:
        return False, f"the parcel is a net source ({net:,.3f} t CO2e/yr over {f.t1}-{f.t2}) although its {comp} removals are {r:,.3f}"
    return True, f"{comp} removals {r:,.3f} t CO2e/yr over {f.t1}-{f.t2} (parcel net {net:,.3f})"


def _forest_at_start(meth, f: ParcelFacts, start: date):
    n = int(meth.param("forest_at_start", "forest_years_before_start").value)
    mn = meth.param("forest_at_start", "min_forest_share").value
    limit = start.year - n
    early = [y for y in f.snapshot_years if y <= max(limit, f.t1)]
    if not early:
        return False, f"cannot be established: no land-cover snapshot in or before {limit}"
    for y in early:
        share = f.forest_m2.get(y, 0.0) / f.area_m2 if f.area_m2 else 0.0
        if share < mn:
            return False, f"only {share:.0%} of the parcel was forest in {y} (at least {mn:.0%} needed for forest management)"
    return True, f"forest on {', '.join(f'{f.forest_m2.get(y, 0.0) / f.area_m2:.0%} in {y}' for y in early)} of the parcel"


def _baseline_declared(meth, f: ParcelFacts, start: date):
    if f.baseline_tco2e_per_yr is None:
        return False, "no business-as-usual baseline declared for the parcel (column baseline_tco2e_per_yr)"
    return True, f"baseline (business as usual) {f.baseline_tco2e_per_yr:,.3f} t CO2e/yr declared"


_RULES = {"land_history": _land_history, "plot_area": _plot_area, "wetland": _wetland, "forest_category": _forest_category,
          "vegetation": _vegetation, "tenure": _tenure, "other_programme": _other_programme, "net_removal": _net_removal,
          "forest_at_start": _forest_at_start, "baseline_declared": _baseline_declared}


_PERIOD_RULES = {"use_right": _use_right}


def meth_component(meth: Methodology) -> str:
    return "afforestation" if meth.kind == "afforestation" else "forest_management"


# --- monitoring period, vintages and deductions --------------------------------------------------------
def run_span(t1: int, t2: int) -> tuple[date, date]:
    """The dates a run's stock change is attributed to: 1 January of t1 to 31 December of t2.

    Conservative: the measured stock change between the inventories of t1 and t2 is never spread over
    fewer days than it may have taken."""
    return date(t1, 1, 1), date(t2, 12, 31)


def parse_period(text: str) -> tuple[date, date]:
    try:
        a, b = text.split("..")
        d0, d1 = date.fromisoformat(a.strip()), date.fromisoformat(b.strip())
    except ValueError:
        raise MethodologyError(f"monitoring period '{text}' must be START..END in ISO dates, e.g. 2020-01-01..2023-12-31") from None
    if d1 < d0:
        raise MethodologyError(f"monitoring period '{text}': end {d1} is before start {d0}")
    return d0, d1


def vintage_days(d0: date, d1: date) -> dict[int, int]:
    """Days of each calendar year (vintage) inside [d0, d1], both ends included."""
    out = {}
    for y in range(d0.year, d1.year + 1):
        a, b = max(d0, date(y, 1, 1)), min(d1, date(y, 12, 31))
        out[y] = (b - a).days + 1
    return out


@dataclass
class VintageCredit:
    parcel_id: str
    vintage: int
    holder_id: str
    gross: float          # removals on the credited land in this vintage, t CO2e
    baseline: float       # applied baseline (never below 0, never above gross)
    leakage: float
    uncertainty: float
    uncertainty_share: float
    buffer: int
    issued: int
    remainder: float
    other_programme: str = "none"

    @property
    def net(self) -> float:
        return self.gross - self.baseline - self.leakage - self.uncertainty


def uncertainty_share(meth: Methodology, net_sink: float, ci95: tuple[float, float]) -> float:
    """max(0, half-width at the methodology's confidence / |mean| - precision), capped at 1."""
    if not net_sink:
        return 0.0
    z = NormalDist().inv_cdf(0.5 + meth.uncertainty_confidence.value / 2.0)
    half = (ci95[1] - ci95[0]) / 2.0 * z / Z95
    return min(max(0.0, half / abs(net_sink) - meth.uncertainty_precision.value), 1.0)


def credit_parcel_vintages(meth: Methodology, f: ParcelFacts, t1: int, t2: int, d0: date, d1: date) -> list[VintageCredit]:
    """Credits of one eligible parcel for every vintage of the monitoring period [d0, d1].

    gross = removals of the credited land over the run (t CO2e/yr × (t2 - t1)) × days of the vintage /
    days of the run span; baseline = 0 or the declared BAU removals scaled the same way, applied within
    [0, gross] (credits never exceed the net removal); leakage = share × (gross - baseline); uncertainty
    = share × the rest; buffer (if the methodology has one) rounded up; credits rounded down; the
    fractional remainder is kept. Per parcel-vintage: gross = baseline + leakage + uncertainty + buffer
    + issued + remainder.
    """
    s0, s1 = run_span(t1, t2)
    if d0 < s0 or d1 > s1:
        raise MethodologyError(f"monitoring period {d0}..{d1} is outside the dates the run measures ({s0}..{s1}: inventories "
                               f"of {t1} and {t2}); run a valuation with inventories covering the period")
    span_days = (s1 - s0).days + 1
    years = t2 - t1
    comp = meth_component(meth)
    per_yr = f.removals.get(comp, 0.0)
    base_yr = 0.0 if meth.baseline["kind"] == "zero" else float(f.baseline_tco2e_per_yr or 0.0)
    u_share = uncertainty_share(meth, f.removals.get("net", per_yr), f.ci95)
    out = []
    for v, days in vintage_days(d0, d1).items():
        frac = days / span_days
        gross = per_yr * years * frac
        base = min(max(base_yr * years * frac, 0.0), max(gross, 0.0))
        leak = (gross - base) * meth.leakage_share.value
        unc = (gross - base - leak) * u_share
        net = gross - base - leak - unc
        whole = max(math.floor(net), 0)
        buf = min(math.ceil(net * meth.buffer_share), whole) if meth.buffer_share > 0 and net > 0 else 0
        issued = max(math.floor(net - buf), 0)
        out.append(VintageCredit(f.parcel_id, v, f.holder_id, gross, base, leak, unc, u_share, buf, issued,
                                 net - buf - issued, f.other_programme))
    return out
