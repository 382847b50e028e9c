"""Calculation package for a CCER verifier: `eco-value project package PROJECT --out DIR [--monitoring A..B]`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from test_credits import _cli, _signing_key, pilot_project  # noqa: F401  (the session's signing key, autouse; the pilot afforestation project QLAFF)

PERIOD = "2020-01-01..2023-12-31"
REL = 1e-9


def _read(folder: Path, name: str) -> list[dict]:
    with open(folder / name, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def package(pilot_project, tmp_path_factory):
    """QLAFF issued over 2020-2023, then its package written through the CLI."""
    from eco_value import cli
    from eco_value.exchange.credits import issue_project

    store, run, special, cleared, frf = pilot_project
    issued = issue_project(store, "QLAFF", PERIOD)
    out = tmp_path_factory.mktemp("pkg") / "package"
    with pytest.raises(SystemExit) as ex:
        cli.main(["project", "package", "QLAFF", "--out", str(out), "--monitoring", PERIOD, "--db", store.url])
    assert (ex.value.code or 0) == 0
    return store, run, special, frf, issued, out


def test_deductions_add_up_to_the_issued_credits(package):
    store, run, special, frf, issued, out = package
    rows = _read(out, "deductions.csv")
    assert [int(r["vintage"]) for r in rows] == [2020, 2021, 2022, 2023]
    assert sum(int(r["credits_tco2e"]) for r in rows) == issued["totals"]["net_issued_tco2e"] > 0
    by_v = {i["vintage"]: i for i in issued["issuances"]}
    for r in rows:
        f = {k: float(r[k]) for k in ("removals_tco2e", "baseline_tco2e", "leakage_tco2e", "uncertainty_deduction_tco2e",
                                      "buffer_tco2e", "credits_tco2e", "remainder_tco2e")}
        lhs = f["removals_tco2e"] - f["baseline_tco2e"] - f["leakage_tco2e"] - f["uncertainty_deduction_tco2e"] - f["buffer_tco2e"]
        assert abs(lhs - (f["credits_tco2e"] + f["remainder_tco2e"])) <= REL * max(1.0, f["removals_tco2e"])
        assert int(r["credits_tco2e"]) == by_v[int(r["vintage"])]["net_issued_tco2e"]
        assert r["issuance_id"] == by_v[int(r["vintage"])]["issuance_id"] and r["status"] == "issued, pending verification"


def test_pools_sum_to_the_stored_total_stock_per_parcel(package):
    store, run, special, frf, issued, out = package
    carbon = store.table("carbon", run.id, "parcel").set_index("zone_id")
    rows = _read(out, "stocks.csv")
    pools = ("above_ground_tc", "below_ground_tc", "biomass_unsplit_tc", "dead_organic_matter_tc", "soil_tc")
    parcels = [r for r in rows if r["level"] == "parcel"]
    assert {r["date"] for r in parcels} == {"2020-01-01", "2023-12-31"}
    n_checked = 0
    for r in parcels:
        stored = float(carbon.loc[r["id"], "stock_t1_tc" if r["date"] == "2020-01-01" else "stock_t2_tc"])
        total = sum(float(r[k]) for k in pools)
        assert total == pytest.approx(float(r["total_tc"]), rel=1e-12)
        assert abs(total - stored) <= REL * abs(stored), (r["id"], r["date"], total, stored)
        n_checked += 1
    assert n_checked == 2 * len(carbon.index.intersection({r["id"] for r in parcels}))
    # the afforested parcels gained above- and below-ground biomass between the monitoring dates
    ok = {r["id"] for r in parcels if r["eligible"] == "yes"}
    proj = {r["date"]: r for r in rows if r["level"] == "eligible parcels"}
    assert float(proj["2023-12-31"]["above_ground_tc"]) > float(proj["2020-01-01"]["above_ground_tc"])
    assert float(proj["2023-12-31"]["below_ground_tc"]) > float(proj["2020-01-01"]["below_ground_tc"])
    assert float(proj["2020-01-01"]["total_tc"]) == pytest.approx(
        sum(float(carbon.loc[p, "stock_t1_tc"]) for p in ok), rel=REL)
    # strata partition the parcels: areas and stocks add up
    strata = _read(out, "strata.csv")
    parcels_csv = _read(out, "parcels.csv")
    assert sum(float(s["area_ha"]) for s in strata) == pytest.approx(sum(float(p["area_ha"]) for p in parcels_csv), rel=REL)
    assert sum(float(s["eligible_parcels_area_ha"]) for s in strata) == pytest.approx(
        sum(float(p["area_ha"]) for p in parcels_csv if p["eligible"] == "yes"), rel=REL)
    # under CCER-14-001 only the afforested land of eligible parcels is credited
    for s in strata:
        want = float(s["eligible_parcels_area_ha"]) if s["land_use_change"] == "afforestation" else 0.0
        assert float(s["credited_area_ha"]) == want, s
    assert sum(float(s["credited_area_ha"]) for s in strata) > 0
    for d in ("2020-01-01", "2023-12-31"):
        assert sum(float(r["total_tc"]) for r in rows if r["level"] == "stratum" and r["date"] == d) == pytest.approx(
            sum(float(r["total_tc"]) for r in parcels if r["date"] == d), rel=REL)


def test_every_refused_parcel_appears_with_its_reason(package):
    from eco_value.exchange.projects import eligibility_lines

    store, run, special, frf, issued, out = package
    rows = {r["parcel_id"]: r for r in _read(out, "parcels.csv")}
    lines = eligibility_lines(store, "QLAFF")
    refused = [ln for ln in lines if not ln["passed"]]
    assert refused
    for ln in refused:
        r = rows[ln["parcel_id"]]
        assert r["eligible"] == "no" and r[f"{ln['rule']}_pass"] == "FAIL" and r[f"{ln['rule']}_reason"] == ln["reason"]
    assert rows[special["economic"]]["forest_category_reason"] == "林种 '经济林' is excluded (经济林, economic, greening, 绿化)"
    assert rows[special["wetland"]]["wetland_pass"] == "FAIL"
    assert all(rows[p]["land_history_reason"].startswith("forest remaining forest:") for p in frf)
    assert rows[special["economic"]]["tenure_certificate"].startswith("川(2019)邛崃市不动产权第")
    eligible = {r["parcel_id"] for r in rows.values() if r["eligible"] == "yes"}
    assert eligible == {ln["parcel_id"] for ln in lines} - {ln["parcel_id"] for ln in refused}


def test_parameters_carry_value_unit_source_verified_and_uncertainty(package):
    *_, out = package
    rows = {r["parameter"]: r for r in _read(out, "parameters.csv")}
    assert rows["eligibility.plot_area.min_m2"]["value"] == "400.0" and rows["eligibility.plot_area.min_m2"]["verified"] == "true"
    assert rows["uncertainty.precision"]["verified"] == "false" and rows["uncertainty.precision"]["source"] == "cdm_ar_tool"
    assert rows["uncertainty.precision"]["citation"].startswith("CDM EB (2009) AR tool")
    assert rows["eligibility.plot_area.min_m2"]["citation"].startswith("MEE (2023) CCER-14-001-V01")
    rs = [n for n in rows if n.startswith("carbon.species.") and n.endswith(".root_shoot")]
    assert rs and rows[rs[0]]["uncertainty"].startswith("95% ")
    assert rows["carbon.soil_transition_years"]["unit"] == "yr"
    assert all(r["source"] and r["unit"] is not None for r in rows.values())


def test_summary_html_names_the_methodology_and_every_table(package):
    *_, out = package
    html = (out / "summary.html").read_text(encoding="utf-8")
    assert "CCER-14-001-V01" in html and "温室气体自愿减排项目方法学 造林碳汇" in html
    assert "Forest that remained forest" in html and "SYNTHETIC 合成数据" in html
    for name, zh in (("strata.csv", "分层"), ("parcels.csv", "合格性"), ("stocks.csv", "碳储量"), ("parameters.csv", "参数"),
                     ("deductions.csv", "扣减")):
        assert f'id="{name}"' in html and zh in html
    assert "<script" not in html and "http" not in html.split("</style>")[0]      # self-contained


def test_pool_split_by_hand():
    """One cunninghamia pixel of 100 m3/ha on forest: AG = V·D·BEF·CF, BG = AG·R; DOM and SOC of forest."""
    from eco_value.exchange.package import _pixel_pools
    from eco_value.roles import FOREST_TYPE_T1, FOREST_TYPE_T2, LAND_COVER_T1, LAND_COVER_T2, VOLUME_T1, VOLUME_T2
    from eco_value.rules import load_rules
    from eco_value.rules.ecosystem import NODATA_ID, ecosystem_types, species_groups

    rules = load_rules("cn2011-mee2020")
    fir, forest, crop = species_groups().id("cunninghamia"), ecosystem_types().id("forest"), ecosystem_types().id("cropland")
    lc = np.array([forest, crop, NODATA_ID], dtype=np.uint8)
    sp = np.array([fir, NODATA_ID, NODATA_ID], dtype=np.uint8)
    vol = np.array([100.0, 0.0, 50.0], dtype=np.float32)
    vals = {VOLUME_T1: (vol, -1.0), VOLUME_T2: (vol, -1.0), FOREST_TYPE_T1: (sp, NODATA_ID), FOREST_TYPE_T2: (sp, NODATA_ID),
            LAND_COVER_T1: (lc, NODATA_ID), LAND_COVER_T2: (lc, NODATA_ID)}
    p = _pixel_pools(rules, vals, NODATA_ID)["t2"]
    v = lambda n: rules.value(n)  # noqa: E731
    ag = 100.0 * v("carbon.species.cunninghamia.wood_density") * v("carbon.species.cunninghamia.bef") * \
        v("carbon.species.cunninghamia.carbon_fraction")
    assert p["above_ground_tc"][0] == pytest.approx(ag, rel=1e-12)
    assert p["below_ground_tc"][0] == pytest.approx(ag * v("carbon.species.cunninghamia.root_shoot"), rel=1e-12)
    assert p["dead_organic_matter_tc"][0] == 13.0 and p["soil_tc"][0] == 88.0 and p["biomass_unsplit_tc"][0] == 0.0
    assert p["biomass_unsplit_tc"][1] == pytest.approx(10.6 * 0.47) and p["soil_tc"][1] == 60.7
    assert all(p[k][2] == 0.0 for k in p)                      # nodata land cover: no stock, as in the run


def test_interpolated_dates_planned_vintages_and_refusals(package, capsys, tmp_path):
    from eco_value.exchange.package import build_package

    store, run, *_ = package
    pkg = build_package(store, "QLAFF", "2021-07-01..2022-12-31")
    cols, rows = pkg.tables["stocks.csv"]
    d = [r for r in rows if r["level"] == "parcel" and r["date"] == "2021-07-01"]
    assert d and d[0]["basis"].startswith("interpolated by days between the inventories of 2020 and 2023")
    ded = pkg.tables["deductions.csv"][1]
    assert [r["vintage"] for r in ded] == [2021, 2022] and {r["status"] for r in ded} == {"not issued (calculated)"}
    assert [r["days"] for r in ded] == [184, 365]
    code, msg = _cli(capsys, "project", "package", "QLAFF", "--out", tmp_path / "x", "--monitoring", "2019-01-01..2020-12-31",
                     "--db", store.url)
    assert code == 2 and "--monitoring 2019-01-01..2020-12-31 is outside the crediting period of project QLAFF" in msg
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    code, msg = _cli(capsys, "project", "package", "QLAFF", "--out", tmp_path / "full", "--db", store.url)
    assert code == 2 and "exists and is not empty" in msg
    db_dir = Path(store.url.removeprefix("sqlite:///")).parent
    code, msg = _cli(capsys, "project", "package", "QLAFF", "--out", db_dir, "--overwrite", "--db", store.url)
    assert code == 2 and "the database" in msg and Path(store.url.removeprefix("sqlite:///")).exists()
    code, msg = _cli(capsys, "project", "package", "NOPE", "--out", tmp_path / "y", "--db", store.url)
    assert code == 2 and "no project 'NOPE'" in msg and not (tmp_path / "y").exists()


def test_pools_that_do_not_re_add_to_the_stored_stock_are_refused(package, monkeypatch):
    """If the recomputed pools drift from the run's stored totals (e.g. a changed coefficient), no package is made."""
    import eco_value.exchange.package as P

    store, *_ = package
    real = P._pixel_pools

    def drifted(rules, vals, nodata_id):
        out = real(rules, vals, nodata_id)
        out["t2"]["soil_tc"] = out["t2"]["soil_tc"] * (1 + 1e-6)
        return out

    monkeypatch.setattr(P, "_pixel_pools", drifted)
    with pytest.raises(P.PackageError, match=r"do not add up to the stored total stock for \d+ parcel-date\(s\) \(.* at t2: pools"):
        P.build_package(store, "QLAFF", PERIOD)


def test_removals_tie_to_the_stock_change_of_the_credited_land(package):
    """Σ removals in deductions.csv = (ΔB + ΔDOM + ΔSOC·Δt/D_soil)·44/12 of the credited land in stocks.csv."""
    store, run, *_, out = package
    rows = {r["date"]: r for r in _read(out, "stocks.csv") if r["level"] == "credited land"}
    a, b = rows["2020-01-01"], rows["2023-12-31"]
    d = {k: float(b[k]) - float(a[k]) for k in ("above_ground_tc", "below_ground_tc", "biomass_unsplit_tc",
                                                 "dead_organic_matter_tc", "soil_tc")}
    assert d["above_ground_tc"] > 0 and d["soil_tc"] > 0          # cropland/grassland → forest: biomass and soil gain
    dt = run.period_end - run.period_start
    stock_change = (sum(v for k, v in d.items() if k != "soil_tc") + d["soil_tc"] * dt / 20.0) * 44.0 / 12.0
    removals = sum(float(r["removals_tco2e"]) for r in _read(out, "deductions.csv"))
    assert stock_change == pytest.approx(removals, rel=REL)


def test_forest_management_package_credits_existing_forest_against_its_baseline(package, tmp_path):
    """Under fm-bau-v01 the credited land is forest remaining forest (and its losses); the baseline is deducted."""
    from eco_value.exchange.package import build_package
    from eco_value.exchange.projects import create_project

    store, run, special, frf, issued, out = package
    table = tmp_path / "fm.csv"
    table.write_text("parcel_id,林权证号,基线碳汇量\n" + "".join(f"{p},川(2019)第{i}号,1.5\n" for i, p in enumerate(frf)),
                     encoding="utf-8")
    create_project(store, project_id="QLFM", name="邛崃 森林经营", developer="邛崃市林业局", methodology="fm-bau-v01",
                   start="2020-01-01", run_id=run.id, parcel_table=table)
    pkg = build_package(store, "QLFM", PERIOD)
    assert pkg.methodology["code"] == "ECV-FM-BAU" and "business-as-usual" in pkg.methodology["credits"]
    strata = pkg.tables["strata.csv"][1]
    assert all(s["credited_area_ha"] == 0.0 for s in strata if s["land_use_change"] in ("afforestation", "other"))
    assert sum(s["credited_area_ha"] for s in strata if s["land_use_change"] == "forest_remaining_forest") > 0
    ded = pkg.tables["deductions.csv"][1]
    n_ok = pkg.totals["eligible_parcels"]
    # 1.5 t/yr per parcel × the 3 years between the inventories (the credits engine spreads them over the 4-year span)
    assert n_ok > 0 and sum(r["baseline_tco2e"] for r in ded) == pytest.approx(1.5 * n_ok * (run.period_end - run.period_start),
                                                                               rel=1e-9)
    for r in ded:
        assert r["removals_tco2e"] - r["baseline_tco2e"] - r["leakage_tco2e"] - r["uncertainty_deduction_tco2e"] - \
            r["buffer_tco2e"] == pytest.approx(r["credits_tco2e"] + r["remainder_tco2e"], abs=1e-9)
    assert pkg.totals["removals_from_stock_change_tco2e"] == pytest.approx(pkg.totals["removals_tco2e"], rel=1e-9)
