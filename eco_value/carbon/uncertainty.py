"""Uncertainty of the carbon sink (IPCC 2006 Vol. 1 Ch. 3).

The stock-difference sink of a zone is linear in per-class sufficient statistics that the run
computes once (Σ area·volume and Σ area by species group and by ecosystem type, both years):

    sink_z = co2/c * [ Σ_s k_s ΔSV_zs / Δt + Σ_s a_s ΔSA_zs / Δt
                       + Σ_c (b_c + dom_c) ΔCA_zc / Δt + Σ_c soc_c ΔCA_zc / D_soil ]

so Approach 2 (Monte Carlo) redraws the parameters N times and recomputes every zone exactly,
without touching a pixel again. Parameters are drawn once per iteration for all pixels (fully
correlated), as IPCC advises for shared emission factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rules import Parameter, RuleSet
from ..rules.ecosystem import ecosystem_types, species_groups
from .stock import class_param, per_area_species, species_code, volume_species

#: Zones per block of the Monte Carlo: its draws × zones sinks and their percentiles are computed block by
#: block, not as one draws × zones array (~144 MB, twice, for 18,000 parcels; issue 17). A power of two,
#: so a multiple of every BLAS kernel's unroll width: each zone's dot products are those of the whole
#: matrix product (the same numbers; checked on the 30 m and 10 m ×4 pilots). Memory only, not a result.
MC_BLOCK_ZONES = 2048  # performance, not accounting

Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal distribution


@dataclass
class SufficientStats:
    """Per-zone sums over valid pixels, each already multiplied by pixel area (ha) and coverage."""

    sv1: np.ndarray  # (zones, species ids)  Σ A·V at t1
    sv2: np.ndarray
    sa1: np.ndarray  # (zones, species ids)  Σ A
    sa2: np.ndarray
    ca1: np.ndarray  # (zones, ecosystem-type positions, see EcosystemTypes.positions)  Σ A
    ca2: np.ndarray
    dt: float


def draw(p: Parameter, n: int, rng: np.random.Generator) -> np.ndarray:
    """N draws of a parameter from its 95 % interval (normal/lognormal/uniform), truncated at 0."""
    v = float(p.value)
    u = p.uncertainty
    if u is None or n == 0:
        return np.full(n, v)
    if u.ci95_pct is not None:
        lo, hi = v * (1 - u.ci95_pct / 100.0), v * (1 + u.ci95_pct / 100.0)
    else:
        lo, hi = float(u.low), float(u.high)
    if u.dist == "uniform":
        x = rng.uniform(lo, hi, n)
    elif u.dist == "lognormal" and v > 0:
        sigma = np.log(max(hi, v * 1.000001) / v) / Z95
        x = v * np.exp(rng.normal(0.0, sigma, n) - 0.0)
    else:
        sd = (hi - lo) / (2 * Z95)
        x = rng.normal(v, sd, n)
    return np.clip(x, 0.0, None)


def param_draws(rules: RuleSet, n: int, rng: np.random.Generator, deterministic: bool):
    """Arrays (n, species ids) for k and a, (n, type positions) for bio+dom and soc.

    Each parameter is drawn once per iteration, in vocabulary order (species groups, then ecosystem
    types); a sub-type that uses its parent's parameter uses the parent's draw (fully correlated).
    """
    drawn: dict[str, np.ndarray] = {}

    def d(name):
        if name not in drawn:
            p = rules.param(name)
            drawn[name] = np.full(n, float(p.value)) if deterministic else draw(p, n, rng)
        return drawn[name]

    types = ecosystem_types()
    n_sp = species_groups().n_ids
    n_cl = types.n_positions
    k = np.zeros((n, n_sp))
    a = np.zeros((n, n_sp))
    for key in volume_species(rules):
        pre = f"carbon.species.{key}"
        k[:, species_code(key)] = d(f"{pre}.wood_density") * d(f"{pre}.bef") * (1 + d(f"{pre}.root_shoot")) * d(f"{pre}.carbon_fraction")
    for key in per_area_species(rules):
        pre = f"carbon.per_area.{key}"
        a[:, species_code(key)] = d(f"{pre}.biomass") * d(f"{pre}.carbon_fraction")
    cf = d("carbon.default_carbon_fraction")
    bd = np.zeros((n, n_cl))
    soc = np.zeros((n, n_cl))
    for t in types:
        pos = types.positions[t.name]
        bd[:, pos] = d(class_param(rules, t.name, "biomass")) * cf + d(class_param(rules, t.name, "dom"))
        soc[:, pos] = d(class_param(rules, t.name, "soc"))
    return k, a, bd, soc


def sink_from_stats(stats: SufficientStats, k, a, bd, soc, soil_years: float, co2_per_c: float) -> np.ndarray:
    """Zone sinks [t CO2e/yr] for parameter draws (n, codes) → (n, zones)."""
    dsv = stats.sv2 - stats.sv1
    dsa = stats.sa2 - stats.sa1
    dca = stats.ca2 - stats.ca1
    ns = dsv.shape[1]
    nc = dca.shape[1]
    # in place, the same operations in the same order as (k·dsv + a·dsa + bd·dca) / dt + soc·dca / soil
    # years, times CO2/C: one (draws, zones) temporary at a time besides the result
    rate = k[:, :ns] @ dsv.T
    rate += a[:, :ns] @ dsa.T
    rate += bd[:, :nc] @ dca.T
    rate /= stats.dt
    soil = soc[:, :nc] @ dca.T
    soil /= soil_years
    rate += soil
    del soil
    rate *= co2_per_c
    return rate


def _zone_block(stats: SufficientStats, sl: slice) -> SufficientStats:
    return SufficientStats(stats.sv1[sl], stats.sv2[sl], stats.sa1[sl], stats.sa2[sl], stats.ca1[sl], stats.ca2[sl],
                           stats.dt)


def monte_carlo(stats: SufficientStats, rules: RuleSet, n: int = 1000, seed: int = 42) -> dict[str, np.ndarray]:
    """IPCC Approach 2: mean, 2.5th and 97.5th percentiles of every zone's sink [t CO2e/yr]."""
    rng = np.random.default_rng(seed)
    soil = rules.value("carbon.soil_transition_years")
    co2 = rules.value("constants.molar_ratio_co2_c")
    det = sink_from_stats(stats, *param_draws(rules, 1, rng, True), soil, co2)[0]
    if n <= 0:
        return {"deterministic": det, "mean": det, "low": det, "high": det, "n": 0, "seed": seed}
    k, a, bd, soc = param_draws(rules, n, rng, False)
    mean, low, high = [], [], []
    for i in range(0, max(len(det), 1), MC_BLOCK_ZONES):   # each zone's draws are its own column
        sims = sink_from_stats(_zone_block(stats, slice(i, i + MC_BLOCK_ZONES)), k, a, bd, soc, soil, co2)
        mean.append(sims.mean(axis=0))
        low.append(np.percentile(sims, 2.5, axis=0))
        high.append(np.percentile(sims, 97.5, axis=0))
        del sims
    return {
        "deterministic": det,
        "mean": np.concatenate(mean),
        "low": np.concatenate(low),
        "high": np.concatenate(high),
        "n": n,
        "seed": seed,
    }


def approach1_pct(stats: SufficientStats, rules: RuleSet) -> np.ndarray:
    """IPCC Approach 1 error propagation: 95 % half-width of each zone's sink, in percent.

    Products: U = sqrt(Σ U_i²); sums: U = sqrt(Σ (U_j x_j)²) / |Σ x_j| (Vol. 1 Eq. 3.1, 3.2).
    """
    def u(name):
        p = rules.param(name)
        if p.uncertainty is None:
            return 0.0
        if p.uncertainty.ci95_pct is not None:
            return p.uncertainty.ci95_pct
        return 100.0 * (p.uncertainty.high - p.uncertainty.low) / 2 / float(p.value)

    co2 = rules.value("constants.molar_ratio_co2_c")
    terms, us = [], []
    for key in volume_species(rules):
        pre = f"carbon.species.{key}"
        r = rules.value(f"{pre}.root_shoot")
        uk = np.sqrt(u(f"{pre}.wood_density") ** 2 + u(f"{pre}.bef") ** 2 + (u(f"{pre}.root_shoot") * r / (1 + r)) ** 2
                     + u(f"{pre}.carbon_fraction") ** 2)
        c = species_code(key)
        kval = rules.value(f"{pre}.wood_density") * rules.value(f"{pre}.bef") * (1 + r) * rules.value(f"{pre}.carbon_fraction")
        terms.append(kval * (stats.sv2[:, c] - stats.sv1[:, c]) / stats.dt * co2)
        us.append(uk)
    total = sink_from_stats(stats, *param_draws(rules, 1, np.random.default_rng(0), True),
                            rules.value("carbon.soil_transition_years"), co2)[0]
    num = np.sqrt(sum((ui * t) ** 2 for ui, t in zip(us, terms)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total != 0, num / np.abs(total), np.nan)
