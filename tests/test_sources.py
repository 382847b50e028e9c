"""Sources of the GEP parameters: printed cross-checks, evidence classes and ranges, the humidifier
term and the fertiliser-based N valuation by hand, the reservoir-cost alternatives, the audit."""

from __future__ import annotations

import numpy as np
import pytest

from eco_value.errors import RuleSetError
from eco_value.rules.ecosystem import ecosystem_types
from eco_value.rules import load_rules, rules_dir
from eco_value.services import SERVICES
from eco_value.services.base import price_factor
from eco_value.services.soil_conservation import nutrient_prices

from test_services import A_M2, ctx_for, total

R = load_rules("cn2011-mee2020")


def test_price_years_reproduce_the_rebased_values_printed_by_the_secondary_sources():
    # Bai et al. 2017 Table 3 prints LY/T 1721's dredging and reservoir costs at 2010 prices
    assert round(12.6 * price_factor(R, 2002, 2010), 2) == 15.58
    assert round(6.1107 * price_factor(R, 2005, 2010), 2) == 7.06
    # Miao et al. 2017 Table 1 rebases LY/T 1721-2008's oxygen price to 2014
    assert round(1000.0 * price_factor(R, 2008, 2014), 2) == 1160.70
    assert R.value("gep.oxygen_release.price_year") == 2008
    assert R.value("gep.soil_conservation.price_year") == 2002


def test_water_purification_prices_are_on_one_basis():
    p = {j: R.value(f"gep.water_purification.price.{j}") for j in ("cod", "tn", "tp")}
    assert p == {"cod": 700.0, "tn": 875.0, "tp": 2800.0}
    assert all(R.param(f"gep.water_purification.price.{j}").source.startswith("s2_bai2017 Table 3") for j in p)


def test_fertiliser_based_n_and_p_prices_by_hand():
    ctx = ctx_for([[ecosystem_types().id("forest")]])
    pn, pp = nutrient_prices(ctx)
    f = 708.0 / 522.7                       # CPI 2023 / 2008
    assert pn == pytest.approx(2400.0 / 0.14 * f, rel=1e-12)     # 23,221 CNY per t N
    assert pp == pytest.approx(2400.0 / 0.1501 * f, rel=1e-12)
    # doubling the N content of the fertiliser halves the N price, nothing else moves
    ctx.rules = R.with_value("gep.soil_conservation.fertiliser_n_content", 0.28)
    assert nutrient_prices(ctx) == (pytest.approx(pn / 2, rel=1e-12), pytest.approx(pp, rel=1e-12))


def test_humidifier_term_by_hand():
    """One water pixel, AET 730 mm: E_w = 0.73 m * 100 m2 * 116/365 = 23.2 m3 on cooling days."""
    ctx = ctx_for([[ecosystem_types().id("water")]], aet=730.0)
    q, v = total(SERVICES["climate_regulation"].compute(ctx))
    e_w = 0.73 * A_M2 * 116.0 / 365.0
    assert e_w == pytest.approx(23.2)
    # the pixel is float32 (the kernel's precision, ~6e-8 relative)
    assert q == pytest.approx(23.2 * (2450.0 / 3.6 / 3.0 + 120.0), rel=1e-6)   # 5263.0 + 2784 kWh
    ctx.rules = R.with_value("gep.climate_regulation.humidifier_energy", 0.0)
    q0, _ = total(SERVICES["climate_regulation"].compute(ctx))
    assert q - q0 == pytest.approx(23.2 * 120.0, rel=1e-6)   # a difference of two float32 pixels (ulp 0.0005)
    assert v == pytest.approx(q * 0.5224, rel=1e-6)   # float32 pixels


def test_transpiration_energy_reproduces_the_garze_2010_gep():
    """Bai et al. 2017 (Acta Ecol. Sin. 37(19)) print no EPP table, but their Table 4 (climate regulation
    by ecosystem, 亿元), Table 1 (areas, km2) and Table 3 (0.53 CNY/kWh) with V = EPP A d c / (3600 R),
    R = 3.0, give EPP x d; the rule set's forest and shrub EPP give the same d = 15 days to 5 digits."""
    r = R.value("gep.climate_regulation.ac_efficiency")
    printed = {"forest": (666.68, 31920.60), "shrub": (309.16, 32283.46), "grassland": (507.68, 71113.87)}
    days = {}
    for cls, (value_1e8_cny, area_km2) in printed.items():
        kwh_per_m2 = value_1e8_cny * 1e8 / 0.53 / (area_km2 * 1e6)
        epp_d = kwh_per_m2 * 3600.0 * r                                   # kJ/m2 over the cooling days
        days[cls] = epp_d / R.value(f"gep.climate_regulation.transpiration_energy.{cls}")
    assert days["forest"] == pytest.approx(15.0, rel=1e-4)
    assert days["shrub"] == pytest.approx(15.0, rel=1e-4)
    assert days["grassland"] == pytest.approx(11.84, rel=1e-3)       # not reproduced: stays a placeholder
    assert R.param("gep.climate_regulation.transpiration_energy.grassland").evidence == "placeholder"
    # the vegetation total of Table 3 (2799.10 亿 kWh) is the sum of the three classes of Table 4
    assert sum(v for v, _ in printed.values()) / 0.53 == pytest.approx(2799.10, abs=0.01)


def test_cooling_days_from_the_printed_chengdu_normals():
    """Days with Tmax > 26 C: each day's Tmax normal around its month's printed mean maximum (sd 3.5 C)."""
    from math import erf, sqrt
    mean_max = [9, 12, 16, 22, 27, 28, 30, 30, 26, 21, 16, 11]          # Jan-Dec, C (s_chengdu_normals)
    days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    def count(sd):
        return sum(d * 0.5 * (1 - erf((26.0 - t) / (sd * sqrt(2)))) for t, d in zip(mean_max, days))
    assert round(count(3.5)) == R.value("gep.climate_regulation.cooling_days") == 116.0
    assert 114.0 < count(4.5) < count(2.5) < 120.0
    lo, hi, _d, _b = R.uncertainty_range("gep.climate_regulation.cooling_days")
    assert (lo, hi) == (sum(days[5:8]), sum(days[4:9])) == (92, 153)   # Jun-Aug (>= 28 C) .. May-Sep (>= 26 C)


def test_soil_nutrient_contents_are_the_mean_of_the_printed_sichuan_values():
    n = {"jianyang": 1.24, "wenjiang": 1.56, "yaan": 2.79}              # total N, g/kg
    p = {"jianyang": 0.73, "wenjiang": 0.246, "yaan": 0.383}            # total P, g/kg
    for name, vals in (("soil_n_content", n), ("soil_p_content", p)):
        key = f"gep.soil_conservation.{name}"
        assert R.value(key) == pytest.approx(sum(vals.values()) / 3 / 1000, rel=1e-12)
        assert R.uncertainty_range(key)[:2] == pytest.approx((min(vals.values()) / 1000, max(vals.values()) / 1000))


def test_runoff_coefficients_and_c_factor_match_the_printed_tables():
    # Gong et al. 2017 Table 2 (Ouyang group) prints the shrub, grassland and wetland values; forest differs
    assert R.value("gep.water_conservation.runoff_coefficient.shrub") == 0.0426
    assert R.value("gep.water_conservation.runoff_coefficient.grassland") == 0.0937
    assert R.value("gep.water_conservation.runoff_coefficient.wetland") == 0.0
    assert R.uncertainty_range("gep.water_conservation.runoff_coefficient.forest")[:2] == (0.0267, 0.0465)
    # He, Dai & Chen 2020 Sect. 2.1 (after Cai et al. 2000): C = 0.6508 - 0.3436 lg f
    assert (R.value("gep.soil_conservation.c_factor_a"), R.value("gep.soil_conservation.c_factor_b")) == (0.6508, 0.3436)


def test_every_gep_parameter_has_an_evidence_class_and_a_range():
    for r in (R, load_rules("cn2011-ndrc2022"), load_rules("cn2011-mee2020-reservoir-high")):
        for name, p in r.params.items():
            if not name.startswith("gep."):
                continue
            assert p.evidence in r.evidence_classes, name
            if not isinstance(p.value, list):
                lo, hi, _dist, basis = r.uncertainty_range(name)
                assert lo <= float(p.value) <= hi, name
                assert basis == "parameter" or basis == f"evidence:{p.evidence}"
    assert R.evidence_classes["placeholder"].ci95_pct > R.evidence_classes["literature"].ci95_pct \
        > R.evidence_classes["measured"].ci95_pct > R.evidence_classes["exact"].ci95_pct == 0.0
    # a default spread by class, or the parameter's own sources' range
    lo, hi, dist, basis = R.uncertainty_range("gep.flood_regulation.water_storage_depth_m")
    assert (lo, hi) == pytest.approx((0.6, 1.8), rel=1e-12) and (dist, basis) == ("lognormal", "evidence:placeholder")
    # the storm share has its own range: printed upper bound 0.6 (Miao et al. 2017 Table 1, K for P > 20 mm)
    assert R.uncertainty_range("gep.flood_regulation.storm_share") == (0.15, 0.60, "uniform", "parameter")
    assert R.uncertainty_range("gep.climate_regulation.cooling_days") == (92.0, 153.0, "uniform", "parameter")
    assert R.uncertainty_range("gep.climate_regulation.price")[:2] == (0.52, 0.60)


def _edited(tmp_path, old, new):
    text = (rules_dir() / "cn2011-mee2020.toml").read_text(encoding="utf-8")
    assert old in text
    p = tmp_path / "edited.toml"
    p.write_text(text.replace(old, new, 1).replace('name = "cn2011-mee2020"', 'name = "edited"'), encoding="utf-8")
    return str(p)


def test_unknown_evidence_class_and_value_outside_its_range_are_errors(tmp_path):
    with pytest.raises(RuleSetError, match="'gep.flood_regulation.storm_share': evidence: Input should be 'exact', 'measured'"):
        load_rules(_edited(tmp_path, 'value = 0.30\nunit = "fraction"\nsource = "chengdu_climate share of annual precipitation falling in storm events"\nverified = false\nevidence = "placeholder"',
                           'value = 0.30\nunit = "fraction"\nsource = "chengdu_climate share of annual precipitation falling in storm events"\nverified = false\nevidence = "guess"'))
    with pytest.raises(RuleSetError, match="evidence class 'exact' is not defined under \\[evidence_classes\\]"):
        load_rules(_edited(tmp_path, "[evidence_classes.exact]", "[evidence_classes.exactly]"))
    with pytest.raises(RuleSetError, match=r"value 0.7 lies outside its uncertainty range 0.52..0.6"):
        load_rules(_edited(tmp_path, "value = 0.5224\n", "value = 0.7\n"))
    with pytest.raises(RuleSetError, match="ci95_pct"):
        load_rules(_edited(tmp_path, "[evidence_classes.measured]\nci95_pct = 10.0", "[evidence_classes.measured]\nspread = 10.0"))


def test_derivation_and_evidence_do_not_change_the_hash_of_a_rule_set_stored_before_them():
    from eco_value.rules import RuleSet
    data = R.canonical()
    old = {k: v for k, v in data.items() if k != "evidence_classes"}
    old["params"] = {k: {f: x for f, x in v.items() if f not in ("derivation", "evidence")} for k, v in data["params"].items()}
    back = RuleSet.from_canonical(old)
    assert back.canonical() == old
    assert RuleSet.from_canonical(data).content_hash == R.content_hash


@pytest.fixture(scope="module")
def pilot300(tmp_path_factory):
    from eco_value.inputs.pilot import generate_pilot
    d = tmp_path_factory.mktemp("p300") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=300.0, seed=7)
    return d / "catalog.toml"


def test_reservoir_cost_alternatives_on_the_300m_pilot(pilot300):
    """Water conservation of the 300 m pilot under each named alternative: the exact price ratio."""
    from eco_value.inputs.catalog import load_catalog
    from eco_value.inputs.readers import open_layers
    from eco_value.services import ServiceContext

    cat = load_catalog(pilot300)
    layers, grid = open_layers(cat, keys=["precip", "aet", "land_cover@t2"])
    vals = {}
    for name in ("cn2011-mee2020", "cn2011-mee2020-reservoir-high"):
        ctx = ServiceContext(layers=layers, grid=grid, rules=load_rules(name), year=2023)
        vals[name] = total(SERVICES["water_conservation"].compute(ctx))
    (q_lo, v_lo), (q_hi, v_hi) = vals["cn2011-mee2020"], vals["cn2011-mee2020-reservoir-high"]
    assert q_lo == q_hi > 0
    ratio = 82.18 / (6.1107 * 708.0 / 464.0)            # 8.8136: 2023 default vs LY/T 1721 rebased 2005 -> 2023
    # per-pixel values are float32 (each rounded to ~6e-8), their sums float64
    assert v_hi / v_lo == pytest.approx(ratio, rel=1e-6)
    assert v_lo == pytest.approx(q_lo * 6.1107 * 708.0 / 464.0, rel=1e-6)


def test_audit_no_material_parameter_lacks_a_source_or_derivation(pilot300):
    from eco_value.rules.audit import MATERIAL, audit_rows

    rows, totals = audit_rows(R, pilot300)
    by = {r.parameter: r for r in rows}
    assert set(by) == set(R.params)
    material = [r for r in rows if (r.share or 0) >= MATERIAL]
    assert len(material) > 20
    assert [r.parameter for r in material if not r.sourced] == []
    # stricter for GEP: a material placeholder states its derivation, and a material value that is not
    # verified against the primary standard names a secondary source that was read (a [sources] entry
    # of shared/methods/parameter-audit.md or later, key s<n>_... / s_...) or states its derivation
    read = {k for k in R.sources if k[0] == "s" and (k[1].isdigit() or k[1] == "_")}
    gep_material = [r for r in material if r.target == "gep"]
    assert [r.parameter for r in gep_material if r.evidence == "placeholder" and not r.derivation.strip()] == []
    unsupported = [r.parameter for r in gep_material if not r.verified and not r.derivation.strip()
                   and not read & set(r.source.replace(";", " ").replace(",", " ").split())]
    assert unsupported == []
    # the sink from the per-class sums equals the raster sink exactly
    assert totals["sink_tco2e_per_yr"] == pytest.approx(totals["sink_tco2e_per_yr_raster"], rel=1e-9)
    # a price multiplying one service: its share is that service's share of GEP (an elasticity by a 1 % step
    # over float32 pixels: each pixel's rounding, ~6e-8, is divided by the step, so it holds to ~1e-5)
    g = totals["gep_cny"]
    for price, svc in (("gep.climate_regulation.price", "climate_regulation"),
                       ("gep.carbon_sequestration.price", "carbon_sequestration")):
        assert by[price].share == pytest.approx(totals["by_service_cny"][svc] / g, rel=1e-4)
    # the reservoir cost prices water conservation and flood regulation
    wf = (totals["by_service_cny"]["water_conservation"] + totals["by_service_cny"]["flood_regulation"]) / g
    assert by["gep.water_conservation.price"].share == pytest.approx(wf, rel=1e-4)
    assert by["constants.molar_ratio_co2_c"].share == pytest.approx(1.0, rel=1e-9)
    assert by["gep.water_conservation.price_year"].share is None
    assert np.isclose(sum(totals["by_service_cny"].values()), g)
