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

Draws: the Monte Carlo mean of GEP is the deterministic GEP (within sampling error). Every parameter is
drawn, once per iteration wherever it is used, from a distribution whose MEAN is the rule set's value and
whose width is its 95 % range (:meth:`RuleSet.uncertainty_range`: its own range, else its evidence class's
default spread); GEP is a sum of products of independent parameters, so its mean is then GEP at the
values. The rule, by the form of the range:

- normal ``low``-``high`` (or ±ci95_pct): normal with mean = value, sd = (high - low) / (2·1.96), clipped at 0;
- lognormal: mean = value (μ = ln v - σ²/2), σ = ln(high/value) / 1.96;
- a sources' min-max (declared ``uniform``): triangular of the range's span s with mean = value. When the
  value lies in the range's middle third, the triangular is the sources' range itself with mode
  3·value - low - high; when it lies nearer an end (the default rule set holds several values AT an
  end: electricity 0.52 of 0.52-0.60 CNY/kWh, DAP N 14 % of 14-18 %), the span slides just far enough
  that the mode is the end nearest the value: [v - s/3, v + 2s/3] (mode v - s/3) or [v - 2s/3, v + s/3].
  Why: drawing the sources' min-max uniformly made the MC mean the range's midpoint, not the value the
  rule set chose (+2.4 % of the 90 m pilot's GEP from the electricity price alone); a triangular is the
  usual form for a min-max with a best value (IPCC 2006 GL vol. 1 ch. 3), and sliding the span keeps the
  sources' spread and the side they lie on, and is continuous in the value.
- a parameter that only divides (the air-conditioner efficiency, the fertiliser's N and P contents:
  :meth:`Draws.inv`) is drawn through its reciprocal, by the same rule applied to 1/value and the range
  [1/high, 1/low]: E[1/X] = 1/value. (Drawing X with mean = value gives E[1/X] > 1/value: +0.8 % of
  GEP from the efficiency at ±30 %.)
- the two coefficients of the soil C-factor regression C = clip(a - b·L, 0, 1) are drawn together
  (:meth:`Draws.together`: the same quantile of each; the coefficients of one fitted line are not
  independent): with equal relative ranges (both ±30 % here) the drawn line is the fitted one scaled, so where the fit says full protection (C = 0,
  FVC ≥ 10^(a/b)/100) every draw agrees. Independent draws put C > 0 under full cover in half of the
  iterations, a -1 % bias of GEP that no data supports.
Measured on the 90 m pilot (20 000 draws, default rule set): MC mean - deterministic was +0.90 % with
the former draws (+1.3 % with 1 000); with this rule -0.10 %, every service within 0.25 %.
Price years and the price index are not drawn.

Sensitivity: one-at-a-time (GEP at each parameter's 2.5 % and 97.5 % bounds, others nominal: the
tornado; its share is swing² / Σ swing², the variance share of a linear model) and Sobol first-order shares S_i = Var(E[Y|X_i]) / Var(Y) from the same draws, by the
given-data binning estimator (equal-count bins of X_i, bias-corrected for the within-bin noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import ndtri

from .errors import RuleSetError
from .grid import M2_PER_HA
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
THIRDS = 3.0            # a triangular distribution's mean is (a + c + b) / 3: its mode from a mean and a range
SIGMA_GUARD = 1.000001  # numerical guard: keeps a lognormal's sigma > 0 for a zero-width range
Q95 = (0.025, 0.975)    # quantiles bounding a 95 % interval
GEP_STREAM = 15         # index of the GEP draws' random stream (independent of the carbon stream; same for every zone)
DRAW_BLOCK = 4_000_000     # draws × types × bins evaluated at once for the soil C factor (~32 MB)


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
                                               depth=1, boundary="nearest", dtype=dem.dtype),
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


def stats_of(county, zone: int = 0) -> dict[str, np.ndarray]:
    """The channels' sums by type position for one zone of the computed county sums
    (an :class:`eco_value.engine.ZoneSums`; the engine sums :func:`channels` by type)."""
    return county.gep_mc_sums(zone)


def soil_c_sum(S: dict, tag: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ RKLS·A·C by draw and type (n, types): C = clip(a - b·L̄, 0, 1) per bin of L (bin mean L̄)."""
    w = S[f"soilh_w_{tag}"].reshape(-1, NB)
    wl = S[f"soilh_wl_{tag}"].reshape(-1, NB)
    keep = w.any(axis=0)                                           # bins with pixels (fewer columns)
    keep[0] = False
    w, wl = w[:, keep], wl[:, keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        lbar = np.where(w > 0, wl / w, 0.0)                        # (types, bins)
    a, b = np.broadcast_to(a, (len(a),)), np.broadcast_to(b, (len(a),))
    out = np.empty((len(a), w.shape[0]))
    step = max(1, DRAW_BLOCK // max(1, w.size))                     # memory O(block), not O(draws · types · bins)
    for k in range(0, len(a), step):
        c = np.clip(a[k:k + step, None, None] - b[k:k + step, None, None] * lbar[None], 0.0, 1.0)
        out[k:k + step] = (c * w[None]).sum(axis=2)
    return out + S[f"soilh_w_{tag}"].reshape(-1, NB)[:, 0][None]   # bin 0: C = 1


# ------------------------------------------------------------------------------------------------
# draws: each parameter from a distribution whose mean is the rule set's value (module docstring)

@dataclass(frozen=True)
class Marginal:
    """The distribution one parameter is drawn from: ``kind`` normal | lognormal | triangular | point.

    normal: (mean, sd), clipped at 0; lognormal: (mean, sigma of the log); triangular: (low, mode, high).
    """

    kind: str
    mean: float
    p: tuple = ()

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Quantiles at probabilities ``u`` (draws are ``ppf`` of uniform numbers: joint draws share them)."""
        u = np.asarray(u, dtype=np.float64)
        if self.kind == "point":
            return np.full(u.shape, self.mean)
        if self.kind == "normal":
            return np.clip(self.mean + self.p[0] * ndtri(u), 0.0, None)
        if self.kind == "lognormal":
            s = self.p[0]
            return self.mean * np.exp(-0.5 * s * s + s * ndtri(u))
        a, c, b = self.p
        fc = (c - a) / (b - a)
        return np.where(u < fc, a + np.sqrt(u * (b - a) * (c - a)), b - np.sqrt((1.0 - u) * (b - a) * (b - c)))


def marginal(rules: RuleSet, name: str, reciprocal: bool = False) -> Marginal:
    """The distribution of ``name`` (of 1/``name`` when ``reciprocal``) with the rule set's value as its mean.

    See the module docstring: a normal or lognormal 95 % range keeps its form (mean = value); a sources'
    min-max (declared ``uniform``) becomes a triangular whose mean is the value.
    """
    v = float(rules.value(name))
    lo, hi, dist, _basis = rules.uncertainty_range(name)
    if reciprocal:
        if v <= 0 or lo <= 0:
            raise RuleSetError(f"rule set '{rules.name}': parameter '{name}' divides in the GEP equations but its value "
                               f"{v:g} or the low end of its range {lo:g} is not positive; give a range above 0")
        v, lo, hi = 1.0 / v, 1.0 / hi, 1.0 / lo
    if hi <= lo:
        return Marginal("point", v)
    if dist == "uniform":
        s = hi - lo
        if v < lo + s / THIRDS:       # value in the lower third: the span slides down, mode at its lower end
            a, b = v - s / THIRDS, v + 2.0 * s / THIRDS
            return Marginal("triangular", v, (a, a, b))
        if v > hi - s / THIRDS:       # upper third: mode at the upper end
            a, b = v - 2.0 * s / THIRDS, v + s / THIRDS
            return Marginal("triangular", v, (a, b, b))
        mode = min(max(THIRDS * v - lo - hi, lo), hi)   # in [lo, hi]: rounding at a third's edge gave lo - 1e-17
        return Marginal("triangular", v, (lo, mode, hi))
    if dist == "lognormal" and v > 0:
        return Marginal("lognormal", v, (math.log(max(hi, v * SIGMA_GUARD) / v) / Z95,))
    return Marginal("normal", v, ((hi - lo) / (2 * Z95),))


def draw_param(rules: RuleSet, name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """N draws of a scalar parameter (see the module docstring)."""
    return marginal(rules, name).ppf(rng.uniform(size=n))


def bounds95(rules: RuleSet, name: str, how: str = "direct") -> tuple[float, float]:
    """The 2.5 % and 97.5 % quantiles of the parameter as drawn (its one-at-a-time bounds)."""
    q = marginal(rules, name, how == "reciprocal").ppf(np.array(Q95))
    if how == "reciprocal":
        return float(1.0 / q[1]), float(1.0 / q[0])
    return float(q[0]), float(q[1])


def drawable(rules: RuleSet, name: str) -> bool:
    p = rules.params.get(name)
    return (p is not None and not isinstance(p.value, list) and not name.endswith("price_year")
            and not name.startswith("gep.price_index"))


class Draws:
    """Parameter values for n iterations: each name drawn once (cached) or nominal; ``fixed`` overrides.

    ``d(name)`` is the parameter, ``d.inv(name)`` 1/parameter for one that only divides (its reciprocal
    is drawn with mean 1/value), ``d.together(a, b)`` parameters drawn jointly (the same quantile of
    each marginal: rank correlation 1). ``drawn`` keeps each parameter's own values, ``how`` the way
    it was drawn (direct | reciprocal | together).
    """

    def __init__(self, rules: RuleSet, n: int, rng: np.random.Generator | None = None,
                 fixed: dict[str, np.ndarray] | None = None):
        self.rules, self.n, self.rng = rules, n, rng
        self.fixed = fixed or {}
        self.drawn: dict[str, np.ndarray] = {}
        self.how: dict[str, str] = {}

    def _get(self, name: str, how: str, u: np.ndarray | None = None) -> np.ndarray:
        if name in self.fixed:
            return np.broadcast_to(np.asarray(self.fixed[name], dtype=np.float64), (self.n,))
        if self.how.setdefault(name, how) != how:
            raise ValueError(f"{name} is drawn both {self.how[name]} and {how} in the GEP equations")
        if name not in self.drawn:
            if self.rng is None or not drawable(self.rules, name):
                self.drawn[name] = np.full(self.n, float(self.rules.value(name)))
            else:
                u = self.rng.uniform(size=self.n) if u is None else u
                m = marginal(self.rules, name, how == "reciprocal")
                x = m.ppf(u)
                self.drawn[name] = 1.0 / x if how == "reciprocal" else x
        return self.drawn[name]

    def __call__(self, name: str) -> np.ndarray:
        return self._get(name, "direct")

    def inv(self, name: str) -> np.ndarray:
        """1/parameter for n iterations, its reciprocal drawn with mean 1/value (a divisor)."""
        return 1.0 / self._get(name, "reciprocal")

    def together(self, *names: str) -> list[np.ndarray]:
        """Parameters of one fitted relation, drawn at the same quantile of each one's distribution."""
        u = self.rng.uniform(size=self.n) if self.rng is not None else None
        return [self._get(nm, "together", u) for nm in names]

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
                d("gep.flood_regulation.water_storage_depth_m") * (water @ A) * M2_PER_HA
            v = q * _rebase(d, "gep.water_conservation.price", "gep.water_conservation.price_year", to_year)
        elif key == "climate_regulation":
            days, per_eff = d("gep.climate_regulation.cooling_days"), d.inv("gep.climate_regulation.ac_efficiency")
            epp = d.by_type("gep.climate_regulation.transpiration_energy")
            e_pt = (epp @ A) * M2_PER_HA * days * per_eff / KJ_PER_KWH
            per_m3 = d("gep.climate_regulation.latent_heat") * per_eff + d("gep.climate_regulation.humidifier_energy")
            e_we = (water @ S["et_m3"]) * days / DAYS_PER_YEAR * per_m3
            v = (e_pt + e_we) * _rebase(d, "gep.climate_regulation.price", "gep.climate_regulation.price_year", to_year)
        elif key == "soil_conservation":
            pf = d.by_type("gep.soil_conservation.p_factor", default="gep.soil_conservation.p_factor.other")
            a, b = d.together("gep.soil_conservation.c_factor_a", "gep.soil_conservation.c_factor_b")

            def q_of(tag):   # Σ RKLS·A·(1 - C·P) by draw
                return S[f"soilh_w_{tag}"].sum() - (pf * soil_c_sum(S, tag, a, b)).sum(axis=1)

            dredge = _rebase(d, "gep.soil_conservation.dredging_cost", "gep.soil_conservation.price_year", to_year)
            fert = _rebase(d, "gep.soil_conservation.fertiliser_price", "gep.soil_conservation.fertiliser_price_year", to_year)
            nut = d("gep.soil_conservation.soil_n_content") * fert * d.inv("gep.soil_conservation.fertiliser_n_content") + \
                d("gep.soil_conservation.soil_p_content") * fert * d.inv("gep.soil_conservation.fertiliser_p_content")
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
                     "each parameter drawn with the rule set's value as its mean (triangular for a sources' min-max, "
                     "reciprocal for a divisor, the soil C-factor coefficients together); soil C factor at each bin's "
                     "mean log10 FVC; carbon and oxygen from the carbon draws"}
    if n <= 1:
        out.update({"total": _ci(np.array([out["deterministic_cny"]])), "by_service": {k: _ci(np.array([v])) for k, v in det.items()},
                    "sensitivity": []})
        return out
    # its own stream: the carbon interval's draws stay exactly those of carbon.uncertainty.monte_carlo
    rng = np.random.default_rng([seed, GEP_STREAM])
    d = Draws(rules, n, rng)
    shift = None if sink_shift is None else np.asarray(sink_shift, dtype=np.float64)
    vals = service_values(keys, S, d, to_year, base, shift)
    total = sum(vals.values())
    out["by_service"] = {k: _ci(v) for k, v in vals.items()}
    out["total"] = _ci(total)
    out["sensitivity"] = sensitivity(rules, S, base, to_year, d, total, keys, nominal, shift)
    return out


def sensitivity(rules: RuleSet, S, base, to_year, d: Draws, total: np.ndarray, keys, nominal, shift) -> list[dict]:
    """Rows per drawn parameter: its rule-set range (``range_low``/``range_high``), the 2.5 % and 97.5 %
    quantiles of its distribution as drawn (``low``/``high``) and GEP there (others nominal), first-order
    Sobol share. Parameters drawn together (``drawn`` = together) share one first-order share."""
    rows = []
    for name, x in d.drawn.items():
        if not drawable(rules, name):
            continue
        r_lo, r_hi, dist, basis = rules.uncertainty_range(name)
        if r_hi <= r_lo:
            continue
        how = d.how.get(name, "direct")
        lo, hi = bounds95(rules, name, how)
        drawn_as = marginal(rules, name, how == "reciprocal").kind
        if how == "reciprocal":
            drawn_as = f"1/x {drawn_as}"
        one = service_values(keys, S, Draws(rules, 2, fixed={name: np.array([lo, hi])}), to_year, base)
        g = sum(one.values())
        rows.append({"parameter": name, "value": float(rules.value(name)), "low": lo, "high": hi, "dist": drawn_as,
                     "range_low": r_lo, "range_high": r_hi, "range_dist": dist, "drawn": how,
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


def for_run(rules: RuleSet, county, carbon_stats, by_service: dict, to_year: int, n: int, seed: int) -> dict:
    """The run's GEP uncertainty for the county (``county``: an :class:`eco_value.engine.ZoneSums`)."""
    from .carbon.uncertainty import param_draws, sink_from_stats

    soil, co2 = rules.value("carbon.soil_transition_years"), rules.value("constants.molar_ratio_co2_c")
    shift = None
    if n > 1:   # the carbon Monte Carlo's own iterations (same seed and order as carbon.uncertainty.monte_carlo)
        rng = np.random.default_rng(seed)
        det = sink_from_stats(carbon_stats, *param_draws(rules, 1, rng, True), soil, co2)[0, 0]
        shift = sink_from_stats(carbon_stats, *param_draws(rules, n, rng, False), soil, co2)[:, 0] - det
    base = {k: float(v["value_cny"]) for k, v in by_service.items()}
    base["__sink__"] = float(county.carbon_sink_tco2e_per_yr[0])
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


# ------------------------------------------------------------------------------------------------
# zone intervals: the same sums by zone (townships), the same parameter draws as the county

ZONE_KINDS = ("township",)   # parcels: the per-zone soil bins (4 × types × NB ≈ 22 600 sums) would be
#                              ~0.8 GB per chunk task for the pilot's 4 499 parcels; townships ~3 MB


def zone_sums(zones: dict, prefixes: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The per-zone-kind ``only`` entries (channel name prefixes) that give the zone kinds of
    ``ZONE_KINDS`` the Monte Carlo sums too."""
    return {kind: prefixes for kind in ZONE_KINDS if kind in zones}


def zone_intervals(rules: RuleSet, zones: dict, carbon_stats: dict, keys, to_year: int, n: int,
                   seed: int) -> dict[str, dict[int, dict]]:
    """95 % interval of GEP of every zone of ``ZONE_KINDS``: kind → zone index → mean, low, high, sd.

    ``zones``: kind → :class:`eco_value.engine.ZoneSums` of the run (with the Monte Carlo channels);
    ``carbon_stats``: kind → its carbon SufficientStats. Every zone uses the county's parameter draws
    (same seed, same order: one draw of a parameter is the same number everywhere, as a parameter is
    one number for the region) and the carbon Monte Carlo's iterations for its own sink.
    """
    from .carbon.uncertainty import param_draws, sink_from_stats

    out: dict[str, dict[int, dict]] = {}
    if n <= 1:
        return out
    soil, co2 = rules.value("carbon.soil_transition_years"), rules.value("constants.molar_ratio_co2_c")
    keys = list(keys)
    for kind in ZONE_KINDS:
        z = zones.get(kind)
        if z is None or not z.has_gep_mc_sums:
            continue
        rng = np.random.default_rng(seed)   # the carbon Monte Carlo's iterations, as in for_run
        det = sink_from_stats(carbon_stats[kind], *param_draws(rules, 1, rng, True), soil, co2)[0]
        shift = sink_from_stats(carbon_stats[kind], *param_draws(rules, n, rng, False), soil, co2) - det[None]
        # the county's stream and order of services (``keys``): each parameter takes the county's draws
        d = Draws(rules, n, np.random.default_rng([seed, GEP_STREAM]))
        sink = z.carbon_sink_tco2e_per_yr
        values = {k: z.value_cny(k) for k in keys}
        res = {}
        for zi in range(z.n):
            base = {k: float(values[k][zi]) for k in keys}
            base["__sink__"] = float(sink[zi])
            total = sum(service_values(keys, z.gep_mc_sums(zi), d, to_year, base, shift[:, zi]).values())
            res[zi] = _ci(total)
        out[kind] = res
    return out


def attach_zone_intervals(u: dict, rules: RuleSet, zones: dict, carbon_stats: dict, tables: dict, run_id: str,
                          to_year: int, n: int, seed: int) -> list[dict]:
    """Zone intervals into the run: ``u["by_zone"]`` (summary), the columns ``gep_mc_mean_cny``,
    ``gep_ci95_low_cny``, ``gep_ci95_high_cny`` of the county and township table rows, and the rows of the
    store's ``gep_intervals`` table (returned). ``zones``: kind → :class:`eco_value.engine.ZoneSums`."""
    keys = list(u["by_service"])
    by_kind = {"county": {0: u["total"]} if u["draws"] > 1 else {}}
    by_kind.update(zone_intervals(rules, zones, carbon_stats, keys, to_year, n, seed))
    ids = {kind: zones[kind].ids for kind in by_kind}
    u["by_zone"] = {kind: {ids[kind][zi]: ci for zi, ci in res.items()} for kind, res in by_kind.items() if kind != "county"}
    rows = []
    for kind, res in by_kind.items():
        trows = {r["zone_id"]: r for r in tables.get(kind, [])}
        for zi, ci in res.items():
            zid = ids[kind][zi]
            row = trows.get(zid)
            if row is not None:
                row.update({"gep_mc_mean_cny": ci["mean"], "gep_ci95_low_cny": ci["low"], "gep_ci95_high_cny": ci["high"]})
            rows.append(dict(run_id=run_id, zone_kind=kind, zone_id=zid,
                             gep_cny=float(row["gep_cny"]) if row is not None else float(u["deterministic_cny"]),
                             mc_mean_cny=ci["mean"], ci95_low_cny=ci["low"], ci95_high_cny=ci["high"],
                             draws=int(n), seed=int(seed)))
    return rows
