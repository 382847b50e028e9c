"""Monte Carlo uncertainty and sensitivity of GEP over every gep.* parameter (issue 15, items 2-3).

Why it is cheap. Per zone, each service's value is a sum over pixels of products of scalar or
per-ecosystem-type parameters and pixel quantities. The run's single pass therefore sums a few pixel
quantities by ecosystem type of t2 (the *channels* of :func:`channels`, e.g. Σ area, Σ precipitation
volume, Σ R·K·LS·area); afterwards every draw is a small matrix product over ~20 types
(:func:`service_values`), with no pixel work. Per service:

- air purification, water purification: V = Σ_j p_j Σ_t cap_jt A_t                  (exact)
- water conservation: V = p_w Σ_t [P_t (1 - α_t) - ET_t]                             (exact)
- flood regulation: V = p_w [s Σ_t P_t (1 - r_t) + d A_water]                        (exact; p_w shared
  with water conservation and drawn once per iteration)
- climate regulation: V = p_e [D/(3600 η) Σ_t EPP_t A_t + D/365 (q/η + y) ET_water]    (exact: the
  non-linear parts D/η, q/η are products and ratios of scalars, evaluated per draw)
- soil conservation: V = silt·c_dredge Σ q/ρ + (N%·p_f/N_f + P%·p_f/P_f) Σ q, q = RKLS·A·(1 - C·P_t).
  The C factor C = clip(a - b·L, 0, 1), L = log10(100 FVC), is non-linear through its clipping; the
  pass records Σ RKLS·A (and ÷ρ) and Σ RKLS·A·L by type and by NB bins of L. A draw evaluates
  C = clip(a - b·L̄) at each bin's mean L̄ (exact within a bin that a draw's clip boundary does not
  cut; the error is tested against brute-force re-runs on the 300 m pilot).
- carbon sequestration, oxygen release: V = p (·r_O2) × the zone's net sink of the *same* iteration of
  the carbon Monte Carlo (same seed, same draws as the carbon interval), shifted to the raster sink.
- provisioning, recreation: county totals are statistics × table prices; no rule-set parameter
  changes them (held fixed). A service this module does not know is held at its value (reported).

Draws: each parameter from its 95 % range (:meth:`RuleSet.uncertainty_range`: its own range, else its
evidence class's default spread), once per iteration wherever it is used (fully correlated). Normal
ranges are clipped at 0; lognormal ranges keep the nominal value as the mean (μ = ln v - σ²/2).
Price years and the price index are not drawn.

Sensitivity: one-at-a-time (GEP at each parameter's 2.5 % and 97.5 % bounds, others nominal: the
tornado; its share is swing² / Σ swing², the variance share of a linear model) and Sobol first-order shares S_i = Var(E[Y|X_i]) / Var(Y) from the same draws, by the
given-data binning estimator (equal-count bins of X_i, bias-corrected for the within-bin noise).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from .rules import RuleSet
from .rules.ecosystem import ecosystem_types
from .services.base import DAYS_PER_YEAR, KG_PER_T, KJ_PER_KWH, MM_PER_M, ServiceContext, price_factor

Z95 = 1.959963984540054   # two-sided 95 % quantile of the standard normal distribution
SOIL_ELIGIBLE = ("cropland", "forest", "shrub", "grassland", "wetland")   # as services/soil_conservation.py
LINEAR = ("air_purification", "water_purification", "water_conservation", "flood_regulation",
          "climate_regulation", "soil_conservation", "carbon_sequestration", "oxygen_release")
FIXED = ("provisioning", "recreation")
PREFIX = "gmc:"
NB = 256                # bins of L = log10(100 FVC) for the soil C factor (bin 0: C = 1)
L_MIN, L_MAX = -2.0, 2.0   # FVC 0.01 % .. 100 %: below, C = a - b·L >= 1 for any plausible a, b


# ------------------------------------------------------------------------------------------------
# the single pass: per-pixel channels, summed by t2 ecosystem type in the county

def type_positions(ctx: ServiceContext) -> xr.DataArray:
    """Dense ecosystem-type position of every pixel from the t2 land cover alone (nodata → dropped)."""
    return ctx.lookup(ctx.types.position_lut)


def channels(ctx: ServiceContext, services: dict) -> dict[str, tuple]:
    """(codes, per-pixel quantity, number of codes) whose sums by code make every draw of GEP a small
    matrix product; codes are t2 type positions (soil: type position · NB + bin of log10 FVC)."""
    valid = ctx.valid
    a_m2 = ctx.pixel_area_m2
    out = {"a_ha": xr.where(valid, ctx.pixel_area_ha, 0.0)}
    has = ctx.layers.__contains__
    p = ctx.masked_float("precip") if has("precip") else None
    et = ctx.masked_float("aet") if has("aet") else None
    if p is not None:
        out["p_m3"] = (p * a_m2 / MM_PER_M).where(valid)
    if et is not None:
        out["et_m3"] = (et * a_m2 / MM_PER_M).where(valid)
    if p is not None and et is not None:
        both = valid & p.notnull() & et.notnull()
        out["pw_m3"] = (p * a_m2 / MM_PER_M).where(both)
        out["etw_m3"] = (et * a_m2 / MM_PER_M).where(both)
    pos, n = type_positions(ctx), ctx.types.n_positions
    coded = {k: (pos, v, n) for k, v in out.items()}
    if "soil_conservation" in services:
        coded.update(_soil_channels(ctx, services["soil_conservation"]))
    return {PREFIX + k: v for k, v in coded.items()}


def _soil_channels(ctx: ServiceContext, res) -> dict[str, tuple]:
    """Σ RKLS·A (and ÷ ρ) by type and by bin of L = log10(100 FVC), with Σ ·L per bin (codes type·NB + bin)."""
    from .services import soil_conservation as sc

    ls = res.details.get("ls")
    if ls is None:   # recompute (the service's details are a convenience, not a contract)
        dem = ctx.masked_float("dem")
        ls = xr.DataArray(dem.data.map_overlap(lambda b: sc.ls_factor(sc.slope_radians(b, ctx.grid.res_m), ctx.grid.res_m),
                                               depth=1, boundary="nearest", dtype="float64"),
                          dims=dem.dims, coords=dem.coords).fillna(0.0)
    dem = ctx.masked_float("dem")
    R, K = ctx.masked_float("erosivity"), ctx.masked_float("erodibility")
    fvc = ctx.masked_float("fvc")
    rho = ctx.masked_float("bulk_density")
    ok = ctx.valid & ctx.class_mask(*SOIL_ELIGIBLE) & dem.notnull() & fvc.notnull() & rho.notnull()
    base = (R * K * ls * ctx.pixel_area_ha).where(ok)
    lg = np.log10((fvc * 100.0).clip(min=1e-6))
    # bin 0: C = 1 whatever a, b (FVC <= 0, or L below L_MIN); bins 1..NB-1: L in equal steps up to L_MAX
    step = (L_MAX - L_MIN) / (NB - 1)
    b = (((lg - L_MIN) / step).clip(0, NB - 2).fillna(0).astype("int64") + 1).where((fvc > 0) & (lg >= L_MIN), 0)
    codes = (type_positions(ctx) * NB + b.astype("int64"))
    n = ctx.types.n_positions * NB
    out = {}
    for tag, w in (("1", base), ("r", base / rho)):
        out[f"soilh_w_{tag}"] = (codes, w, n)
        out[f"soilh_wl_{tag}"] = (codes, (w * lg).where(b > 0, 0.0), n)
    return out


def by_type_sums(ctx: ServiceContext, services: dict) -> dict[str, tuple]:
    """The ``coded`` entries (positions, value, n_types) that pipeline ``build`` sums for the county."""
    return {f"cls:{k}": v for k, v in channels(ctx, services).items()}


def stats_of(county: dict, zone: int = 0) -> dict[str, np.ndarray]:
    """The channels' sums by type position for one zone of the computed county sums."""
    return {k[len("cls:" + PREFIX):]: np.asarray(v[zone], dtype=np.float64)
            for k, v in county.items() if k.startswith("cls:" + PREFIX)}


def soil_c_sum(S: dict, tag: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ RKLS·A·C by draw and type (n, types): C = clip(a - b·L̄, 0, 1) per bin of L (bin mean L̄)."""
    w = S[f"soilh_w_{tag}"].reshape(-1, NB)
    wl = S[f"soilh_wl_{tag}"].reshape(-1, NB)
    with np.errstate(divide="ignore", invalid="ignore"):
        lbar = np.where(w > 0, wl / w, 0.0)                        # (types, NB)
    c = np.clip(a[:, None, None] - b[:, None, None] * lbar[None], 0.0, 1.0)
    c[:, :, 0] = 1.0
    return (c * w[None]).sum(axis=2)


# ------------------------------------------------------------------------------------------------
# draws

def draw_param(rules: RuleSet, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """N draws of a scalar parameter from its 95 % range (see the module docstring)."""
    v = float(rules.value(name))
    lo, hi, dist, _basis = rules.uncertainty_range(name)
    if n == 0 or hi <= lo:
        return np.full(n, v)
    if dist == "uniform":
        return rng.uniform(lo, hi, n)
    if dist == "lognormal" and v > 0:
        sigma = math.log(max(hi, v * 1.000001) / v) / Z95
        return v * np.exp(rng.normal(-0.5 * sigma * sigma, sigma, n))
    return np.clip(rng.normal(v, (hi - lo) / (2 * Z95), n), 0.0, None)


def drawable(rules: RuleSet, name: str) -> bool:
    p = rules.params.get(name)
    return (p is not None and not isinstance(p.value, list) and not name.endswith("price_year")
            and not name.startswith("gep.price_index"))


class Draws:
    """Parameter values for n iterations: each name drawn once (cached) or nominal; ``fixed`` overrides."""

    def __init__(self, rules: RuleSet, n: int, rng: np.random.Generator | None = None,
                 fixed: dict[str, np.ndarray] | None = None):
        self.rules, self.n, self.rng = rules, n, rng
        self.fixed = fixed or {}
        self.drawn: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name in self.fixed:
            return np.broadcast_to(np.asarray(self.fixed[name], dtype=np.float64), (self.n,))
        if name not in self.drawn:
            if self.rng is None or not drawable(self.rules, name):
                self.drawn[name] = np.full(self.n, float(self.rules.value(name)))
            else:
                self.drawn[name] = draw_param(self.rules, name, self.n, self.rng)
        return self.drawn[name]

    def by_type(self, prefix: str, default: str | None = None) -> np.ndarray:
        """(n, type positions) matrix of a per-type parameter group (parent fallback, else ``default``)."""
        types = ecosystem_types()
        m = np.zeros((self.n, types.n_positions))
        for t in types:
            name = types.param_name(self.rules, prefix, t.name)
            name = name or default
            if name is not None:
                m[:, types.positions[t.name]] = self(name)
        return m


def _positions_under(*names: str) -> np.ndarray:
    types = ecosystem_types()
    mask = np.zeros(types.n_positions)
    for i in types.ids_under(*names):
        pos = types.position_lut[i]
        if pos < types.n_positions:
            mask[pos] = 1.0
    return mask


# ------------------------------------------------------------------------------------------------
# service values from the sums

def _rebase(d: Draws, price: str, year: str, to_year: int) -> np.ndarray:
    return d(price) * price_factor(d.rules, int(d.rules.value(year)), to_year)


def service_values(keys, S: dict[str, np.ndarray], d: Draws, to_year: int, base: dict[str, float],
                   sink_shift: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Value [CNY] of each service for the n iterations of ``d`` from a zone's sums by type ``S``.

    ``base`` holds the run's values (used for the fixed services); ``sink_shift`` is the zone's net sink
    of each iteration minus its nominal sink [t CO2e/yr] (carbon Monte Carlo), or None for nominal.
    """
    n = d.n
    out: dict[str, np.ndarray] = {}
    A = S["a_ha"]
    water = _positions_under("water")
    for key in keys:
        if key == "air_purification":
            v = np.zeros(n)
            for j in ("so2", "nox", "dust"):
                cap = d.by_type(f"gep.air_purification.{j}")
                v += (cap @ A) / KG_PER_T * _rebase(d, f"gep.air_purification.price.{j}", "gep.air_purification.price_year", to_year)
        elif key == "water_purification":
            wet = _positions_under("wetland")
            v = np.zeros(n)
            for j in ("cod", "tn", "tp"):
                q = d(f"gep.water_purification.capacity.{j}_water") * (water @ A) + \
                    d(f"gep.water_purification.capacity.{j}_wetland") * (wet @ A)
                v += q * _rebase(d, f"gep.water_purification.price.{j}", "gep.water_purification.price_year", to_year)
        elif key == "water_conservation":
            alpha = d.by_type("gep.water_conservation.runoff_coefficient")
            elig = _eligible("gep.water_conservation.runoff_coefficient", d.rules)
            q = ((1.0 - alpha) * elig) @ S["pw_m3"] - elig @ S["etw_m3"]
            v = q * _rebase(d, "gep.water_conservation.price", "gep.water_conservation.price_year", to_year)
        elif key == "flood_regulation":
            coef = d.by_type("gep.flood_regulation.storm_runoff_coefficient")
            veg = _eligible("gep.flood_regulation.storm_runoff_coefficient", d.rules)
            q = d("gep.flood_regulation.storm_share") * (((1.0 - coef) * veg) @ S["p_m3"]) + \
                d("gep.flood_regulation.water_storage_depth_m") * (water @ A) * 1e4
            v = q * _rebase(d, "gep.water_conservation.price", "gep.water_conservation.price_year", to_year)
        elif key == "climate_regulation":
            days, eff = d("gep.climate_regulation.cooling_days"), d("gep.climate_regulation.ac_efficiency")
            epp = d.by_type("gep.climate_regulation.transpiration_energy")
            e_pt = (epp @ A) * 1e4 * days / (KJ_PER_KWH * eff)
            per_m3 = d("gep.climate_regulation.latent_heat") / eff + d("gep.climate_regulation.humidifier_energy")
            e_we = (water @ S["et_m3"]) * days / DAYS_PER_YEAR * per_m3
            v = (e_pt + e_we) * _rebase(d, "gep.climate_regulation.price", "gep.climate_regulation.price_year", to_year)
        elif key == "soil_conservation":
            pf = d.by_type("gep.soil_conservation.p_factor", default="gep.soil_conservation.p_factor.other")
            a, b = d("gep.soil_conservation.c_factor_a"), d("gep.soil_conservation.c_factor_b")

            def q_of(tag):   # Σ RKLS·A·(1 - C·P) by draw
                return S[f"soilh_w_{tag}"].sum() - (pf * soil_c_sum(S, tag, a, b)).sum(axis=1)

            dredge = _rebase(d, "gep.soil_conservation.dredging_cost", "gep.soil_conservation.price_year", to_year)
            fert = _rebase(d, "gep.soil_conservation.fertiliser_price", "gep.soil_conservation.fertiliser_price_year", to_year)
            nut = d("gep.soil_conservation.soil_n_content") * fert / d("gep.soil_conservation.fertiliser_n_content") + \
                d("gep.soil_conservation.soil_p_content") * fert / d("gep.soil_conservation.fertiliser_p_content")
            v = d("gep.soil_conservation.silting_share") * dredge * q_of("r") + nut * q_of("1")
        elif key in ("carbon_sequestration", "oxygen_release"):
            sink = base["__sink__"] + (sink_shift if sink_shift is not None else 0.0)
            if key == "carbon_sequestration":
                v = sink * _rebase(d, "gep.carbon_sequestration.price", "gep.carbon_sequestration.price_year", to_year)
            else:
                v = sink * d("constants.molar_ratio_o2_co2") * \
                    _rebase(d, "gep.oxygen_release.price", "gep.oxygen_release.price_year", to_year)
        else:   # provisioning, recreation (no rule-set parameter at county level) and unknown services
            v = np.full(n, float(base[key]))
        out[key] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
    return out


def _eligible(prefix: str, rules: RuleSet) -> np.ndarray:
    types = ecosystem_types()
    m = np.zeros(types.n_positions)
    for t in types:
        if types.param_name(rules, prefix, t.name) is not None:
            m[types.positions[t.name]] = 1.0
    return m


# ------------------------------------------------------------------------------------------------
# Monte Carlo and sensitivity

def sobol_first_order(x: np.ndarray, y: np.ndarray, bins: int | None = None) -> float:
    """Given-data estimate of S = Var(E[Y|X]) / Var(Y): equal-count bins of X, bias-corrected.

    The variance of the bin means over-states Var(E[Y|X]) by the mean within-bin variance / bin size;
    that bias is subtracted. The estimate is not clipped at 0: for a parameter without influence it
    scatters around 0 (about ±sqrt(2m)/n for m bins), so the shares of many parameters still sum to
    at most 1 within that noise; it is capped at 1.
    """
    n = len(y)
    vy = float(np.var(y))
    if n < 4 or vy <= 0 or np.ptp(x) == 0:
        return 0.0
    m = bins or max(2, int(round(math.sqrt(n))))
    order = np.argsort(x, kind="stable")
    groups = np.array_split(y[order], m)
    means = np.array([g.mean() for g in groups])
    sizes = np.array([len(g) for g in groups], dtype=float)
    within = np.array([g.var(ddof=1) if len(g) > 1 else 0.0 for g in groups])
    between = float(np.sum(sizes * (means - y.mean()) ** 2) / n)
    bias = float(np.sum(sizes * within / sizes) / n)
    return float(min(1.0, (between - bias) / vy))


def _ci(a: np.ndarray) -> dict:
    return {"mean": float(a.mean()), "low": float(np.percentile(a, 2.5)), "high": float(np.percentile(a, 97.5)),
            "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def gep_uncertainty(rules: RuleSet, S: dict[str, np.ndarray], base: dict[str, float], to_year: int,
                    sink_shift: np.ndarray | None = None, n: int = 1000, seed: int = 42) -> dict:
    """GEP by service and total with 95 % intervals, and the sensitivity table, for one zone.

    ``base``: the run's value of each service [CNY] and ``"__sink__"`` the zone's nominal net sink;
    ``sink_shift``: the carbon Monte Carlo's n sinks of the zone minus its nominal sink from the same
    sums (same iterations as the carbon interval), or None (carbon held at its value).
    """
    keys = [k for k in base if not k.startswith("__")]
    nominal = service_values(keys, S, Draws(rules, 1), to_year, base)
    det = {k: float(v[0]) for k, v in nominal.items()}
    out = {"draws": int(n), "seed": int(seed), "deterministic_cny": sum(det.values()),
           "held_fixed": [k for k in keys if k not in LINEAR],
           "method": "Monte Carlo over every gep.* parameter from per-type sums (eco_value.gep_uncertainty); "
                     "soil C factor linearised at its nominal clip sets; carbon and oxygen from the carbon draws"}
    if n <= 1:
        out.update({"total": _ci(np.array([out["deterministic_cny"]])), "by_service": {k: _ci(np.array([v])) for k, v in det.items()},
                    "sensitivity": []})
        return out
    # its own stream: the carbon interval's draws stay exactly those of carbon.uncertainty.monte_carlo
    rng = np.random.default_rng([seed, 15])
    d = Draws(rules, n, rng)
    shift = None if sink_shift is None else np.asarray(sink_shift, dtype=np.float64)
    vals = service_values(keys, S, d, to_year, base, shift)
    total = sum(vals.values())
    out["by_service"] = {k: _ci(v) for k, v in vals.items()}
    out["total"] = _ci(total)
    out["sensitivity"] = sensitivity(rules, S, base, to_year, d, total, keys, nominal, shift)
    return out


def sensitivity(rules: RuleSet, S, base, to_year, d: Draws, total: np.ndarray, keys, nominal, shift) -> list[dict]:
    """Rows per drawn parameter: range, GEP at its bounds (others nominal), first-order Sobol share."""
    rows = []
    for name, x in d.drawn.items():
        if not drawable(rules, name):
            continue
        lo, hi, dist, basis = rules.uncertainty_range(name)
        if hi <= lo:
            continue
        one = service_values(keys, S, Draws(rules, 2, fixed={name: np.array([lo, hi])}), to_year, base)
        g = sum(one.values())
        rows.append({"parameter": name, "value": float(rules.value(name)), "low": lo, "high": hi, "dist": dist,
                     "basis": basis, "gep_at_low": float(g[0]), "gep_at_high": float(g[1]),
                     "swing_cny": float(abs(g[1] - g[0])), "oat_share": 0.0,
                     "sobol_first_order": sobol_first_order(x, total)})
    if shift is not None and np.ptp(shift) > 0:   # the carbon parameters together, through the sink
        rows.append({"parameter": "carbon sink (all carbon.* parameters)", "value": float(base["__sink__"]),
                     "low": float(np.percentile(base["__sink__"] + shift, 2.5)),
                     "high": float(np.percentile(base["__sink__"] + shift, 97.5)), "dist": "monte carlo", "basis": "carbon",
                     "gep_at_low": float("nan"), "gep_at_high": float("nan"), "swing_cny": float("nan"), "oat_share": 0.0,
                     "sobol_first_order": sobol_first_order(shift, total)})
    swing2 = sum(r["swing_cny"] ** 2 for r in rows if r["swing_cny"] == r["swing_cny"])
    for r in rows:
        if swing2 > 0 and r["swing_cny"] == r["swing_cny"]:
            r["oat_share"] = r["swing_cny"] ** 2 / swing2
        else:
            r["gep_at_low"] = r["gep_at_high"] = r["swing_cny"] = None
    rows.sort(key=lambda r: (-r["sobol_first_order"], -(r["swing_cny"] or 0.0)))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def for_run(rules: RuleSet, county: dict, carbon_stats, by_service: dict, to_year: int, n: int, seed: int) -> dict:
    """The run's GEP uncertainty for the county (called by pipeline ``_assemble``)."""
    from .carbon.uncertainty import _param_draws, sink_from_stats

    soil, co2 = rules.value("carbon.soil_transition_years"), rules.value("constants.molar_ratio_co2_c")
    shift = None
    if n > 1:   # the carbon Monte Carlo's own iterations (same seed and order as carbon.uncertainty.monte_carlo)
        rng = np.random.default_rng(seed)
        det = sink_from_stats(carbon_stats, *_param_draws(rules, 1, rng, True), soil, co2)[0, 0]
        shift = sink_from_stats(carbon_stats, *_param_draws(rules, n, rng, False), soil, co2)[:, 0] - det
    base = {k: float(v["value_cny"]) for k, v in by_service.items()}
    base["__sink__"] = float(county["carbon:sink"][0])
    return gep_uncertainty(rules, stats_of(county), base, to_year, shift, n=n, seed=seed)


def stored_sensitivity(summary: dict, run_id: str) -> dict:
    """The GEP interval and ranked sensitivity table of a stored run's summary (``eco-value sensitivity``)."""
    from .errors import StoreError

    u = (summary.get("gep") or {}).get("uncertainty")
    if not u or not u.get("sensitivity"):
        why = "it has no GEP Monte Carlo" if not u else f"it was run with {u.get('draws', 0)} Monte Carlo draw(s)"
        raise StoreError(f"run {run_id}: no GEP sensitivity table ({why}); run the catalog again with "
                         f"`eco-value run CATALOG --force --mc-draws 1000` (sensitivity needs >= 2 draws)")
    return {"run_id": run_id, "gep_cny": summary["gep"]["total_cny"], "deterministic_cny": u["deterministic_cny"],
            "mc": u["total"], "draws": u["draws"], "seed": u["seed"], "held_fixed": u["held_fixed"],
            "by_service": u["by_service"], "parameters": u["sensitivity"]}
