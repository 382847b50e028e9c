"""GEP Monte Carlo and sensitivity (issue 15 items 2-3): eco_value.gep_uncertainty."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eco_value import gep_uncertainty as gm
from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.pilot import generate_pilot
from eco_value.inputs.readers import open_layers, read_table
from eco_value.rules import load_rules
from eco_value.rules.audit import _in_memory
from eco_value.services import SERVICES, ServiceContext

F32 = 1e-6   # per-pixel values of compute(ctx) are float32 (eco_value.grid.PIXEL_DTYPE)

PILOT_RES_M = 300.0
SEED = 7
NO_CARBON = ("air_purification", "water_purification", "water_conservation", "flood_regulation",
             "climate_regulation", "soil_conservation")


# ------------------------------------------------------------------------------------------------
# the estimator on a toy with known first-order indices

def test_sobol_first_order_matches_linear_toy():
    """Y = Σ a_i X_i, X_i ~ N(0, σ_i): S_i = a_i² σ_i² / Σ_j a_j² σ_j² (exact)."""
    rng = np.random.default_rng(3)
    a, sd = np.array([1.0, 2.0, 0.5]), np.array([1.0, 0.5, 2.0])
    n = 5000
    x = rng.normal(0.0, sd, (n, 3))
    y = x @ a
    exact = a ** 2 * sd ** 2 / np.sum(a ** 2 * sd ** 2)
    est = np.array([gm.sobol_first_order(x[:, i], y) for i in range(3)])
    assert np.allclose(est, exact, atol=0.03), (est, exact)
    assert est.sum() <= 1.0 + 0.03
    # brute force: Var(E[Y|X_i]) by nested sampling on fixed X_i agrees with the given-data estimate
    brute = []
    for i in range(3):
        xi = rng.normal(0.0, sd[i], 400)
        inner = rng.normal(0.0, sd, (400, 200, 3))
        inner[:, :, i] = xi[:, None]
        brute.append(np.var((inner @ a).mean(axis=1)) / np.var(y))
    assert np.allclose(est, brute, atol=0.04), (est, brute)


def test_sobol_of_an_irrelevant_input_is_about_zero_and_of_the_only_input_one():
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=2000), rng.normal(size=2000)
    assert gm.sobol_first_order(x, 3 * x) > 0.97
    assert abs(gm.sobol_first_order(z, 3 * x)) < 0.03


# ------------------------------------------------------------------------------------------------
# the 300 m pilot: sums by type reproduce the services exactly at nominal, and brute-force re-runs

@pytest.fixture(scope="module")
def pilot300(tmp_path_factory):
    d = tmp_path_factory.mktemp("p300") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=PILOT_RES_M, seed=SEED)
    cat = load_catalog(d / "catalog.toml")
    raw, grid = open_layers(cat, chunk_px=4096)
    layers = {k: _in_memory(v) for k, v in raw.items()}   # one chunk each: cheap to re-evaluate
    tables = {k: read_table(cat, k) for k in cat.tables}
    y2 = cat.catalog.period[1]
    rules = load_rules()

    def ctx_of(r):
        return ServiceContext(layers=layers, grid=grid, rules=r, year=y2, tables=tables)

    def totals(r):
        ctx = ctx_of(r)
        # summed in float64, as the engine sums (the per-pixel values are float32)
        return {k: float(np.nansum(SERVICES[k].compute(ctx).value_cny.values, dtype=np.float64)) for k in NO_CARBON}

    ctx = ctx_of(rules)
    soil = SERVICES["soil_conservation"].compute(ctx)
    S = {}
    for k, (codes, v, n) in gm.channels(ctx, {"soil_conservation": soil}).items():
        w = np.nan_to_num(np.asarray(v.values, dtype=np.float64)).ravel()
        c = np.asarray(codes.values).ravel()
        keep = (c >= 0) & (c < n)
        S[k[len(gm.PREFIX):]] = np.bincount(c[keep], weights=w[keep], minlength=n)
    to_year = rules.meta.price_year or y2
    return rules, S, totals, to_year


def test_sums_by_type_reproduce_every_service_at_the_nominal_values(pilot300):
    rules, S, totals, to_year = pilot300
    base = totals(rules)
    got = gm.service_values(NO_CARBON, S, gm.Draws(rules, 1), to_year, base)
    for k in NO_CARBON:
        # soil: the C factor is evaluated per bin of log10 FVC (bin mean), not per pixel
        # the others: up to the float32 rounding of the per-pixel values (eco_value.grid.PIXEL_DTYPE)
        assert got[k][0] == pytest.approx(base[k], rel=1e-4 if k == "soil_conservation" else F32), k


def test_draws_from_sums_match_brute_force_reruns(pilot300):
    """Three joint draws of every parameter: exact for the linear services (up to the float32 rounding
    of the re-runs' per-pixel values); the soil C-factor
    binning (C at each bin's mean log10 FVC) within 0.5 % of a full re-run."""
    rules, S, totals, to_year = pilot300
    d = gm.Draws(rules, 3, np.random.default_rng(11))
    pred = gm.service_values(NO_CARBON, S, d, to_year, {})
    assert "gep.soil_conservation.c_factor_a" in d.drawn and "gep.climate_regulation.cooling_days" in d.drawn
    errs = []
    for i in range(3):
        r = rules
        for name, x in d.drawn.items():
            if gm.drawable(rules, name):
                r = r.with_value(name, float(x[i]))
        brute = totals(r)
        for k in NO_CARBON:
            if k == "soil_conservation":
                errs.append(abs(pred[k][i] / brute[k] - 1))
            else:
                assert pred[k][i] == pytest.approx(brute[k], rel=F32), (k, i)
    print("soil binning errors vs brute force:", errs)
    assert max(errs) < 0.005, errs


def _symmetric(rules, names):
    """Every named parameter with a normal range centred on its value (same half-width)."""
    for name in names:
        lo, hi, _dist, _b = rules.uncertainty_range(name)
        half = (hi - lo) / 2
        if half > 0:
            v = rules.value(name)
            rules = rules.with_uncertainty(name, low=v - half, high=v + half, dist="normal")
    return rules


def test_mc_mean_within_one_percent_of_deterministic_with_centred_ranges(pilot300):
    rules, S, totals, to_year = pilot300
    base = totals(rules)
    d = gm.Draws(rules, 2, np.random.default_rng(0))
    gm.service_values(NO_CARBON, S, d, to_year, base)
    sym = _symmetric(rules, [n for n in d.drawn if gm.drawable(rules, n)])
    u = gm.gep_uncertainty(sym, S, dict(base), to_year, None, n=4000, seed=1)
    assert u["deterministic_cny"] == pytest.approx(sum(base.values()), rel=1e-6)
    assert u["total"]["mean"] == pytest.approx(u["deterministic_cny"], rel=0.01)
    assert u["total"]["low"] < u["deterministic_cny"] < u["total"]["high"]


def test_each_parameter_is_drawn_with_the_rule_sets_value_as_its_mean():
    """Known answers of the draw rule (module docstring): a sources' min-max with the value at its low end
    slides to [v - s/3, v + 2s/3] with mode v - s/3 (mean v); in the middle third the range stays and the
    mode is 3v - lo - hi; a divisor's reciprocal has mean 1/v; the C-factor coefficients move together."""
    rules = load_rules()
    price = "gep.climate_regulation.price"
    v = rules.value(price)                                  # the value at the low end of a 0.08-wide min-max
    m = gm.marginal(rules.with_uncertainty(price, low=v, high=v + 0.08, dist="uniform"), price)
    assert m.kind == "triangular" and m.p == pytest.approx((v - 0.08 / 3, v - 0.08 / 3, v + 0.16 / 3))
    mid = gm.marginal(rules.with_uncertainty(price, low=v - 0.06, high=v + 0.08, dist="uniform"), price)
    assert mid.p == pytest.approx((v - 0.06, v - 0.02, v + 0.08))   # mode 3v - lo - hi
    u = (np.arange(200_000) + 0.5) / 200_000                # quadrature of the mean
    for mm in (m, mid):
        assert mm.ppf(u).mean() == pytest.approx(v, rel=1e-6)
    d = gm.Draws(rules, 200_000, np.random.default_rng(2))
    eff = "gep.climate_regulation.ac_efficiency"        # 3 in 2.1-3.9, divides the cooling energy
    assert d.inv(eff).mean() == pytest.approx(1 / 3.0, rel=0.003)
    assert np.mean(1 / np.random.default_rng(2).normal(3.0, 0.9 / gm.Z95, 200_000)) > 1.02 / 3.0   # what it was
    a, b = d.together("gep.soil_conservation.c_factor_a", "gep.soil_conservation.c_factor_b")
    assert np.corrcoef(a, b)[0, 1] > 0.999
    assert a.mean() == pytest.approx(rules.value("gep.soil_conservation.c_factor_a"), rel=0.003)


def test_mc_mean_within_one_percent_of_deterministic_with_the_default_rule_set(pilot300):
    """The 300 m sums with many draws: no bias left beyond sampling error (it was -0.55 % here, +0.9 %
    at 90 m, from ranges with the value at an end, divisors and independent C-factor coefficients)."""
    rules, S, totals, to_year = pilot300
    base = totals(rules)
    u = gm.gep_uncertainty(rules, S, dict(base), to_year, None, n=20000, seed=3)
    assert u["total"]["mean"] == pytest.approx(u["deterministic_cny"], rel=0.002)
    for k in NO_CARBON:
        assert u["by_service"][k]["mean"] == pytest.approx(base[k], rel=0.005), k


def test_widening_a_range_widens_the_interval_and_raises_its_share(pilot300):
    rules, S, totals, to_year = pilot300
    base = totals(rules)
    name = "gep.water_conservation.price"
    u0 = gm.gep_uncertainty(rules, S, dict(base), to_year, None, n=2000, seed=5)
    v = rules.value(name)
    wide = rules.with_uncertainty(name, low=0.2 * v, high=1.8 * v, dist="normal")
    u1 = gm.gep_uncertainty(wide, S, dict(base), to_year, None, n=2000, seed=5)
    w0, w1 = (u["total"]["high"] - u["total"]["low"] for u in (u0, u1))
    assert w1 > 1.1 * w0     # 1.13 since the cooling days and soil N/P carry sourced ranges (was > 1.2)
    share = {u_i: {r["parameter"]: r for r in u["sensitivity"]}[name] for u_i, u in (("a", u0), ("b", u1))}
    assert share["b"]["sobol_first_order"] > share["a"]["sobol_first_order"] + 0.1
    assert share["b"]["oat_share"] > share["a"]["oat_share"]
    assert share["b"]["rank"] == 1
    for u in (u0, u1):
        assert sum(r["sobol_first_order"] for r in u["sensitivity"]) <= 1.0 + 0.1


# ------------------------------------------------------------------------------------------------
# the run: summary, run --json, sensitivity CLI, report

def test_run_summary_cli_and_report_carry_the_gep_interval(pilot_run, tmp_path):
    store, res = pilot_run
    g = res.summary["gep"]
    u = g["uncertainty"]
    assert u["draws"] == 500
    # the sums by type in the run's single pass reproduce its GEP (incl. carbon via the carbon draws' sums)
    assert u["deterministic_cny"] == pytest.approx(g["total_cny"], rel=1e-6)
    assert u["total"]["low"] < g["total_cny"] < u["total"]["high"]
    # acceptance: MC mean of GEP within 1 % of the deterministic value (default rule set, 90 m pilot)
    assert u["total"]["mean"] == pytest.approx(g["total_cny"], rel=0.01)
    assert set(u["by_service"]) == set(g["by_service"])
    assert u["by_service"]["provisioning"]["low"] == u["by_service"]["provisioning"]["high"]
    assert u["held_fixed"] == ["provisioning", "recreation"]
    cs = u["by_service"]["carbon_sequestration"]
    assert cs["low"] < g["by_service"]["carbon_sequestration"]["value_cny"] < cs["high"]
    out = subprocess.run([sys.executable, "-m", "eco_value.cli", "sensitivity", res.run_id, "--db", store.url, "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)
    ranks = [p["rank"] for p in t["parameters"]]
    assert ranks == list(range(1, len(ranks) + 1))
    s1 = [p["sobol_first_order"] for p in t["parameters"]]
    assert s1 == sorted(s1, reverse=True)
    assert sum(s1) <= 1.1
    assert any(p["parameter"].startswith("carbon sink") for p in t["parameters"])
    txt = subprocess.run([sys.executable, "-m", "eco_value.cli", "sensitivity", res.run_id, "--db", store.url],
                         capture_output=True, text=True)
    assert txt.returncode == 0 and "Monte Carlo (500 draws)" in txt.stdout and "Sobol" in txt.stdout
    report = Path(res.outputs["report"]).read_text(encoding="utf-8")
    assert "GEP uncertainty and sensitivity" in report and 'alt="tornado chart" src="data:image/png;base64,' in report


def test_townships_have_gep_intervals_in_summary_store_csv_and_report(pilot_run):
    """Issue 15 item 2 by zone: every township's GEP has a 95 % interval, from its own sums by type in the
    run's single pass and the county's parameter draws. The townships tile the county, so with the same
    draws their Monte Carlo means add up to the county's (a check that the draws are shared)."""
    import pandas as pd

    store, res = pilot_run
    u = res.summary["gep"]["uncertainty"]
    by_zone = u["by_zone"]["township"]
    rows = {r["zone_id"]: r for r in (pd.read_csv(res.outputs["township_csv"], dtype={"zone_id": str})
                                      .to_dict("records"))}
    assert set(by_zone) == set(rows) and len(rows) == 18
    for zid, ci in by_zone.items():
        g = rows[zid]["gep_cny"]
        assert ci["low"] < g < ci["high"], zid
        assert ci["mean"] == pytest.approx(g, rel=0.01), zid          # no bias by zone either
        assert rows[zid]["gep_ci95_low_cny"] == pytest.approx(ci["low"], rel=1e-12)
        assert rows[zid]["gep_ci95_high_cny"] == pytest.approx(ci["high"], rel=1e-12)
    assert sum(ci["mean"] for ci in by_zone.values()) == pytest.approx(u["total"]["mean"], rel=1e-6)
    from eco_value.cli import zone_ci95   # `run --json`: gep.by_township_ci95_cny
    assert zone_ci95(res.summary, "township") == {z: [ci["low"], ci["high"]] for z, ci in by_zone.items()}
    st = store.table("gep_intervals", res.run_id)
    assert sorted(st.zone_kind.unique()) == ["county", "township"] and len(st) == 19
    tw = st[st.zone_kind == "township"].set_index("zone_id")
    for zid, ci in by_zone.items():
        assert tw.loc[zid, "ci95_low_cny"] == ci["low"] and tw.loc[zid, "ci95_high_cny"] == ci["high"]
        assert tw.loc[zid, "gep_cny"] == pytest.approx(rows[zid]["gep_cny"], rel=1e-12)
    cty = st[st.zone_kind == "county"].iloc[0]
    assert (cty.ci95_low_cny, cty.ci95_high_cny, cty.draws) == (u["total"]["low"], u["total"]["high"], 500)
    report = Path(res.outputs["report"]).read_text(encoding="utf-8")
    z = max(by_zone, key=lambda k: rows[k]["gep_cny"])
    assert "GEP 95 % interval" in report
    assert f"{by_zone[z]['low'] / 1e8:,.2f} – {by_zone[z]['high'] / 1e8:,.2f}" in report


def test_sensitivity_of_a_run_without_draws_is_a_clear_error():
    from eco_value.errors import StoreError

    with pytest.raises(StoreError, match="--mc-draws"):
        gm.stored_sensitivity({"gep": {"total_cny": 1.0, "uncertainty": {"draws": 0, "sensitivity": []}}}, "r1")
