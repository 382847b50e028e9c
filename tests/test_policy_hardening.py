"""Policy instruments under hostile input (issue 12): clipped to the run's region, rates and codes
validated against limits in the rule set, allocations exact in whole units with documented rules."""

from __future__ import annotations

import math
from fractions import Fraction

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from eco_value.errors import EcoValueError, InputError
from eco_value.inputs.schemes import load_scheme

CLCD = {name: code for code, name in load_scheme("clcd").int_codes().items()}  # product codes of the pilot's land cover
from eco_value.policy import allocate, check_discount_rate, damage, largest_remainder, value_unit
from eco_value.rules import load_rules

RES_M = 300.0
RULES = load_rules("cn2011-mee2020")
CAP = int(RULES.value("policy.limits.allocation_max_total"))
R_MAX = RULES.value("policy.limits.discount_rate_max")


@pytest.fixture(scope="module")
def run300(tmp_path_factory):
    """The Qionglai pilot at 300 m, valued once and stored in SQLite (a few seconds)."""
    from eco_value.inputs.pilot import generate_pilot
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    d = tmp_path_factory.mktemp("pilot300") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=RES_M, seed=7)
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('db300') / 'run.sqlite'}")
    res = run_valuation(d / "catalog.toml", store, RunOptions(out_dir=d.parent / "out", mc_draws=50))
    county = gpd.read_file(d / "boundary.gpkg")
    return store, res, d, county


def _gpkg(geom, crs, path):
    gpd.GeoDataFrame(geometry=[geom], crs=crs).to_file(path, driver="GPKG")
    return path


def _n_results(store) -> int:
    from sqlmodel import select

    from eco_value.store.models import PolicyResult

    with store.session() as s:
        return len(s.exec(select(PolicyResult)).all())


# --- value-unit: clipped to the region ---------------------------------------------------------------

def test_a_unit_covering_the_county_and_beyond_equals_the_county_totals(run300, tmp_path):
    store, res, d, county = run300
    g = county.geometry.iloc[0]
    big = shapely.box(*g.buffer(5000).bounds)
    u = value_unit(store, res.run_id, _gpkg(big, county.crs, tmp_path / "big.gpkg"))
    tot = res.summary["gep"]["by_service"]
    for k, v in tot.items():     # provisioning and recreation (statistics-based) included: never above the county
        assert u["by_service"][k]["value_cny"] == pytest.approx(v["value_cny"], rel=1e-9, abs=1e-6), k
        assert u["by_service"][k]["quantity"] == pytest.approx(v["quantity"], rel=1e-9, abs=1e-6), k
    assert u["gep_total_cny"] == pytest.approx(res.summary["gep"]["total_cny"], rel=1e-9)
    assert u["carbon"]["net_sink_tco2e_per_yr"] == pytest.approx(res.summary["carbon"]["net_sink_tco2e_per_yr"], rel=1e-9)
    assert u["clipped_to_region"]["outside_ha"] == pytest.approx((big.area - g.area) / 1e4, rel=1e-9)
    assert u["clipped_to_region"]["inside_ha"] == pytest.approx(g.area / 1e4, rel=1e-9)


def test_a_unit_partly_outside_equals_its_clipped_part(run300, tmp_path):
    store, res, d, county = run300
    g = county.geometry.iloc[0]
    minx, miny, maxx, maxy = g.bounds
    box = shapely.box(minx - 10_000, miny - 10_000, (minx + maxx) / 2 + 777.7, maxy + 10_000)
    part = value_unit(store, res.run_id, _gpkg(box, county.crs, tmp_path / "box.gpkg"))
    clip = value_unit(store, res.run_id, _gpkg(shapely.intersection(box, g), county.crs, tmp_path / "clip.gpkg"))
    for k in clip["by_service"]:
        assert part["by_service"][k]["value_cny"] == pytest.approx(clip["by_service"][k]["value_cny"], rel=1e-9, abs=1e-6), k
    assert part["area_ha"] == pytest.approx(clip["area_ha"], rel=1e-12)
    for k in ("provisioning", "recreation"):
        assert part["by_service"][k]["value_cny"] < res.summary["gep"]["by_service"][k]["value_cny"]


def test_a_unit_outside_the_region_is_refused_and_nothing_stored(run300, tmp_path):
    store, res, d, county = run300
    minx, miny, maxx, maxy = county.total_bounds
    away = shapely.box(maxx + 20_000, miny, maxx + 25_000, miny + 5000)
    n = _n_results(store)
    with pytest.raises(InputError, match="does not overlap the run's region") as ex:
        value_unit(store, res.run_id, _gpkg(away, county.crs, tmp_path / "away.gpkg"))
    assert "no-overlap" in ex.value.kinds()
    with pytest.raises(InputError, match="does not overlap the run's region"):
        damage(store, res.run_id, d / "lulc_2023.tif", tmp_path / "away.gpkg")
    assert _n_results(store) == n


# --- damage: rates, years and codes ------------------------------------------------------------------

def _after(d, tmp_path, change, dtype=None):
    with rasterio.open(d / "lulc_2023.tif") as src:
        a, prof = src.read(1), src.profile
    if dtype is not None:
        prof.update(dtype=dtype)
    b = change(a.astype(dtype or a.dtype))
    out = tmp_path / "after.tif"
    with rasterio.open(out, "w", **prof) as ds:
        ds.write(b, 1)
    return out, a


def _forest_box(d, county):
    with rasterio.open(d / "lulc_2023.tif") as src:
        a, t = src.read(1), src.transform
    f = a == CLCD["forest"]
    r, c = next((r, c) for r in range(0, a.shape[0] - 3) for c in range(0, a.shape[1] - 3) if f[r:r + 3, c:c + 3].all())
    return r, c, shapely.box(*rasterio.transform.array_bounds(3, 3, t * rasterio.Affine.translation(c, r)))


@pytest.mark.parametrize("rate", [-0.5, float("nan"), float("inf"), -float("inf"), 0.5, 3.0])
def test_damage_refuses_a_discount_rate_outside_the_rule_sets_limits(run300, tmp_path, rate):
    store, res, d, county = run300
    r, c, box = _forest_box(d, county)
    after, _ = _after(d, tmp_path, lambda x: x)
    n = _n_results(store)
    with pytest.raises(EcoValueError, match=r"--discount-rate .* between 0 and 0\.2") as ex:
        damage(store, res.run_id, after, _gpkg(box, county.crs, tmp_path / "p.gpkg"), discount_rate=rate)
    assert "policy.limits.discount_rate_max" in str(ex.value)
    with pytest.raises(EcoValueError, match=r"--discount-rate .* between 0 and 0\.2"):
        value_unit(store, res.run_id, _gpkg(box, county.crs, tmp_path / "p.gpkg"), years=10, discount_rate=rate)
    assert _n_results(store) == n


def test_the_limits_are_the_rule_sets_and_both_ends_are_accepted():
    assert RULES.value("policy.limits.discount_rate_min") == 0.0 and R_MAX == 0.2
    assert check_discount_rate(RULES, 0.0) == 0.0 and check_discount_rate(RULES, R_MAX) == R_MAX
    assert check_discount_rate(RULES, "0.03") == 0.03


@pytest.mark.parametrize("years", [0, -3, 101, 10**9])
def test_damage_refuses_recovery_years_outside_the_limits(run300, tmp_path, years):
    store, res, d, county = run300
    r, c, box = _forest_box(d, county)
    after, _ = _after(d, tmp_path, lambda x: x)
    with pytest.raises(EcoValueError, match=r"--recovery-years .* between 1 and 100"):
        damage(store, res.run_id, after, _gpkg(box, county.crs, tmp_path / "p.gpkg"), recovery_years=years)


def test_after_land_cover_codes_outside_the_class_scheme_are_listed_with_counts(run300, tmp_path):
    store, res, d, county = run300
    r, c, box = _forest_box(d, county)

    def bad(x):
        x[r, c:c + 3] = 200
        x[r + 1, c:c + 2] = 77
        return x
    after, _ = _after(d, tmp_path, bad)
    n = _n_results(store)
    with pytest.raises(InputError) as ex:
        damage(store, res.run_id, after, _gpkg(box, county.crs, tmp_path / "p.gpkg"))
    msg = str(ex.value)
    assert "bad-code" in ex.value.kinds() and str(after) in msg
    assert "77 (2 pixels)" in msg and "200 (3 pixels)" in msg
    assert _n_results(store) == n


def test_after_land_cover_with_nan_or_fractions_is_refused(run300, tmp_path):
    store, res, d, county = run300
    r, c, box = _forest_box(d, county)

    def bad(x):
        x[r, c] = np.nan
        x[r, c + 1] = 2.5
        return x
    after, _ = _after(d, tmp_path, bad, dtype="float32")
    with pytest.raises(InputError) as ex:
        damage(store, res.run_id, after, _gpkg(box, county.crs, tmp_path / "p.gpkg"))
    msg = str(ex.value)
    assert "nan (1 pixels)" in msg and "2.5 (1 pixels)" in msg


def test_damage_partly_outside_equals_its_clipped_part(run300, tmp_path):
    store, res, d, county = run300
    g = county.geometry.iloc[0]
    minx, miny, maxx, maxy = g.bounds
    box = shapely.box(minx - 3000, (miny + maxy) / 2 - 4000, minx + 6000, (miny + maxy) / 2 + 4000)
    after, _ = _after(d, tmp_path, lambda x: np.where((x != 255) & (x != CLCD["impervious"]), CLCD["impervious"], x).astype(x.dtype))
    whole = damage(store, res.run_id, after, _gpkg(box, county.crs, tmp_path / "box.gpkg"), discount_rate=0.03)
    clip = damage(store, res.run_id, after, _gpkg(shapely.intersection(box, g), county.crs, tmp_path / "c.gpkg"),
                  discount_rate=0.03)
    assert whole["yearly_gep_loss_cny"] > 0
    assert whole["yearly_gep_loss_cny"] == pytest.approx(clip["yearly_gep_loss_cny"], rel=1e-9)
    assert whole["area_ha"] == pytest.approx(clip["area_ha"], rel=1e-12)
    assert whole["clipped_to_region"]["outside_ha"] > 0


# --- allocate: exact whole units, documented rules ---------------------------------------------------

@pytest.mark.parametrize("total", [CAP, 10**15 + 7, 10**20 + 3])
def test_largest_remainder_is_exact_for_huge_totals(total):
    w = {"a": 0.1, "b": 0.2, "c": 0.7, "d": 1e-9, "e": 1 / 3}
    q = largest_remainder(total, w)
    assert sum(q.values()) == total
    W = sum(Fraction(v) for v in w.values())
    for k, v in w.items():
        exact = total * Fraction(v) / W
        assert exact - 1 < q[k] <= exact + 1 and isinstance(q[k], int)


@pytest.mark.parametrize("total", [10**18, 10**20, CAP + 1])
def test_allocate_refuses_a_total_above_the_cap(run300, total):
    store, res, d, county = run300
    n = _n_results(store)
    with pytest.raises(EcoValueError, match=r"--total .* at most 9,007,199,254,740,991.*policy.limits.allocation_max_total"):
        allocate(store, res.run_id, total, "t", "township")
    assert _n_results(store) == n


def test_allocate_at_the_cap_sums_exactly(run300):
    store, res, d, county = run300
    a = allocate(store, res.run_id, CAP, "t", "township")
    assert sum(x["quota"] for x in a["allocation"]) == CAP


def test_allocate_by_parcel_gives_negative_gep_parcels_no_gep_share(run300):
    store, res, d, county = run300
    a = allocate(store, res.run_id, 1_000_000, "t", "parcel", "gep_linked")
    lines = {x["zone_id"]: x for x in a["allocation"]}
    neg = [z for z, x in lines.items() if x["gep_cny"] < 0]
    assert neg, "the pilot has parcels with negative GEP (carbon sources)"
    assert sorted(a["negative_gep_zones"]) == sorted(neg)
    assert sum(x["quota"] for x in lines.values()) == 1_000_000
    wb = RULES.value("policy.allocation.gep_linked.w_baseline")
    sb = sum(x["baseline"] for x in lines.values())
    for z in neg:                              # only the baseline part of the score
        assert lines[z]["score"] == pytest.approx(wb * lines[z]["baseline"] / sb, rel=1e-12)
    pos = max((z for z, x in lines.items() if x["gep_cny"] > 0), key=lambda z: lines[z]["gep_cny"])
    assert lines[pos]["score"] > wb * lines[pos]["baseline"] / sb


def _baseline_csv(tmp_path, rows):
    p = tmp_path / "baseline.csv"
    pd.DataFrame(rows, columns=["zone_id", "baseline"]).to_csv(p, index=False)
    return p


def _townships(store, res):
    return sorted(store.table("zones", res.run_id, zone_kind="township").zone_id)


def test_baseline_with_a_zone_not_in_the_run_is_refused(run300, tmp_path):
    store, res, d, county = run300
    towns = _townships(store, res)
    p = _baseline_csv(tmp_path, [(t, 100.0) for t in towns] + [("NOT-A-TOWN", 5e9)])
    n = _n_results(store)
    with pytest.raises(InputError, match="NOT-A-TOWN") as ex:
        allocate(store, res.run_id, 1000, "t", "township", baseline_file=p)
    assert "unknown-zone" in ex.value.kinds()
    assert _n_results(store) == n


def test_baseline_missing_a_zone_of_the_run_is_refused(run300, tmp_path):
    store, res, d, county = run300
    towns = _townships(store, res)
    p = _baseline_csv(tmp_path, [(t, 100.0) for t in towns[1:]])
    with pytest.raises(InputError, match=rf"missing-zone.*{towns[0]}"):
        allocate(store, res.run_id, 1000, "t", "township", baseline_file=p)


def test_duplicate_zones_are_refused_with_the_duplicates_listed(run300, tmp_path):
    store, res, d, county = run300
    towns = _townships(store, res)
    p = _baseline_csv(tmp_path, [(t, 100.0) for t in towns] + [(towns[2], 1.0), (towns[2], 2.0), (towns[5], 3.0)])
    with pytest.raises(InputError) as ex:
        allocate(store, res.run_id, 1000, "t", "township", baseline_file=p)
    msg = str(ex.value)
    assert "duplicate-id" in ex.value.kinds() and f"{towns[2]} (3 rows)" in msg and f"{towns[5]} (2 rows)" in msg
    zones = tmp_path / "zones.csv"
    pd.DataFrame({"zone_id": ["A", "B", "A"], "baseline": [1.0, 2.0, 3.0], "gep_cny": [1.0, 1.0, 1.0]}).to_csv(zones, index=False)
    with pytest.raises(InputError, match=r"A \(2 rows\)"):
        allocate(store, res.run_id, 1000, "t", str(zones))


@pytest.mark.parametrize("bad", ["nan", "-5", "inf", "lots"])
def test_baseline_values_must_be_finite_non_negative_numbers(run300, tmp_path, bad):
    store, res, d, county = run300
    towns = _townships(store, res)
    p = tmp_path / "baseline.csv"
    p.write_text("zone_id,baseline\n" + "".join(f"{t},{bad if i == 0 else 10}\n" for i, t in enumerate(towns)), encoding="utf-8")
    with pytest.raises(InputError, match=rf"{towns[0]}"):
        allocate(store, res.run_id, 1000, "t", "township", baseline_file=p)


def test_missing_baseline_file_is_a_clear_error(run300, tmp_path):
    store, res, d, county = run300
    with pytest.raises(InputError, match="does not exist"):
        allocate(store, res.run_id, 1000, "t", "township", baseline_file=tmp_path / "nope.csv")
