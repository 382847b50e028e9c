"""Credits a verifier and an exchange would accept: methodologies as data, eligibility per parcel with
reason lines, projects and monitoring periods, CAD Trust records (schemas v2), v1 bundles still read."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sqlite3
from datetime import date

import jsonschema
import pytest
from shapely import from_wkb
from sqlmodel import select

from eco_value.exchange.methodology import (MethodologyError, ParcelFacts, credit_parcel_vintages, eligibility,
                                            load_methodology, vintage_days)
from eco_value.exchange.registry import RegistryError, audit_log

AFF = load_methodology("ccer-14-001-v01")
FM = load_methodology("fm-bau-v01")
SCHEMA_DIR = "exchange_export/schemas/v2"


@pytest.fixture(autouse=True)
def _signing_key(key_dir):   # every test here signs or verifies: the session's test key (conftest.key_dir)
    return key_dir


def facts(**kw) -> ParcelFacts:
    base = dict(parcel_id="P1", area_m2=50_000.0, snapshot_years=[2016, 2020, 2023], t1=2020, t2=2023,
                forest_m2={2016: 0.0, 2020: 0.0, 2023: 20_000.0}, afforested_m2=20_000.0,
                afforested_forest_m2={2016: 0.0}, afforested_wetland_m2=0.0,
                removals={"afforestation": 40.0, "forest_management": 0.0, "net": 40.0}, ci95=(39.0, 41.0),
                holder_id="H1", tenure_certificate="川(2019)邛崃市不动产权第0001号", forest_category="防护林")
    base.update(kw)
    return ParcelFacts(**base)


def failed(checks) -> dict[str, str]:
    return {c.rule: c.reason for c in checks if not c.passed}


# --- methodologies as data ---------------------------------------------------------------------------
def test_methodologies_state_what_they_credit_with_sources():
    assert AFF.kind == "afforestation" and AFF.buffer_share == 0.0 and AFF.buffer["kind"] == "none"
    assert "non-forest" in AFF.credits and "Forest that remained forest" in AFF.credits
    assert FM.kind == "forest_management" and FM.baseline["kind"] == "declared" and "business-as-usual" in FM.credits
    p = {x["name"]: x for x in AFF.parameters()}
    assert p["eligibility.plot_area.min_m2"]["value"] == 400 and p["eligibility.plot_area.min_m2_early"]["value"] == 667
    assert p["eligibility.land_history.non_forest_years_before_start"]["verified"] is True
    assert p["uncertainty.precision"]["verified"] is False          # the audit found no source: flagged
    with pytest.raises(MethodologyError, match="unknown methodology 'vm0047'.*ccer-14-001-v01"):
        load_methodology("vm0047")


# --- eligibility, each rule a line with its reason -----------------------------------------------------
def test_an_afforestation_parcel_that_passes_every_rule():
    checks = eligibility(AFF, facts(), date(2020, 1, 1))
    assert [c.rule for c in checks] == list(AFF.eligibility) and all(c.passed for c in checks), failed(checks)


def test_refusals_each_with_their_reason_line():
    start = date(2020, 1, 1)
    frf = failed(eligibility(AFF, facts(afforested_m2=0.0, forest_m2={2016: 5e4, 2020: 5e4, 2023: 5e4},
                                        removals={"afforestation": 0.0, "forest_management": 80.0, "net": 80.0}), start))
    assert frf["land_history"].startswith("forest remaining forest: 5.00 ha of the parcel was forest in 2020")
    early = failed(eligibility(AFF, facts(planting_year=2018), start))
    assert early == {"land_history": "afforested in 2018 (declared planting year), 2 year(s) before the start 2020-01-01: "
                                     "the land must be non-forest for at least 3 years before the start"}
    small = failed(eligibility(AFF, facts(planted_area_m2=500.0, snapshot_years=[2014, 2020, 2023],
                                          afforested_forest_m2={2014: 0.0}), date(2018, 3, 1)))
    assert small == {"plot_area": "plot of 500 m² (declared planted area) is below the minimum: ≥ 667 m² for a project "
                                  "started in 2018 (in or before 2019)"}
    assert not failed(eligibility(AFF, facts(planted_area_m2=500.0), start))     # 400 m² from 2020 on
    assert failed(eligibility(AFF, facts(wetland_declared=True), start))["wetland"].startswith("the parcel is declared wetland")
    wet = failed(eligibility(AFF, facts(afforested_wetland_m2=4_000.0), start))
    assert wet["wetland"] == "20% of the afforested land (0.40 ha) was wetland before planting (limit 5%)"
    assert failed(eligibility(AFF, facts(forest_category="经济林"), start))["forest_category"].startswith("林种 '经济林' is excluded")
    assert failed(eligibility(AFF, facts(tenure_certificate=""), start))["tenure"].startswith("no tenure evidence")
    assert failed(eligibility(AFF, facts(other_programme="碳惠天府 CDCI"), start))["other_programme"] == \
        "declared in another programme: 碳惠天府 CDCI (double counting)"
    cleared = failed(eligibility(AFF, facts(afforested_forest_m2={2016: 20_000.0}), start))
    assert cleared["land_history"].startswith("100% of the afforested land (2.00 ha) was forest in 2016")
    nohist = failed(eligibility(AFF, facts(snapshot_years=[2020, 2023], afforested_forest_m2={}), start))
    assert nohist["land_history"].startswith("cannot be established: no land-cover snapshot in or before 2017")


# --- forest management: project minus business as usual ------------------------------------------------
def fm_facts(pid, removals, baseline):
    return facts(parcel_id=pid, afforested_m2=0.0, forest_m2={2016: 5e4, 2020: 5e4, 2023: 5e4}, baseline_tco2e_per_yr=baseline,
                 removals={"afforestation": 0.0, "forest_management": removals, "net": removals},
                 ci95=(removals * 0.99, removals * 1.01))


def test_forest_management_by_hand_three_parcels():
    d0, d1 = date(2020, 1, 1), date(2023, 12, 31)                  # 1461 days; the 2020→2023 change is 3 years
    cases = {"A": (100.0, 60.0), "B": (50.0, 50.0), "C": (30.0, -20.0)}
    out = {}
    for pid, (r, b) in cases.items():
        f = fm_facts(pid, r, b)
        assert all(c.passed for c in eligibility(FM, f, d0)), failed(eligibility(FM, f, d0))
        out[pid] = credit_parcel_vintages(FM, f, 2020, 2023, d0, d1)
    # A: (100 - 60) t/yr x 3 yr = 120 t over 1461 days: 2020 has 366 days -> 30.06, other years 29.98 -> 30+29+29+29
    assert [v.issued for v in out["A"]] == [30, 29, 29, 29]
    assert sum(v.remainder for v in out["A"]) == pytest.approx(120 - 117)
    assert sum(v.baseline for v in out["A"]) == pytest.approx(180.0)
    # B: the project does what business as usual would: nothing to credit
    assert [v.issued for v in out["B"]] == [0, 0, 0, 0] and sum(v.remainder for v in out["B"]) == pytest.approx(0.0)
    # C: a negative baseline (planned harvest) never lifts credits above the net removal (90 t)
    assert sum(v.baseline for v in out["C"]) == 0.0 and [v.issued for v in out["C"]] == [22, 22, 22, 22]
    for pid, vs in out.items():
        r, _ = cases[pid]
        assert sum(v.issued for v in vs) <= r * 3
        assert sum(v.issued + v.buffer + v.baseline + v.leakage + v.uncertainty + v.remainder for v in vs) == \
            pytest.approx(r * 3, rel=1e-12)
    assert failed(eligibility(FM, fm_facts("D", 10.0, None), d0))["baseline_declared"].startswith("no business-as-usual")
    refused = failed(eligibility(FM, facts(), d0))                  # an afforestation parcel is not existing forest
    assert refused["forest_at_start"] == "only 0% of the parcel was forest in 2016 (at least 50% needed for forest management)"


def test_vintages_split_the_period_by_days():
    assert vintage_days(date(2020, 7, 1), date(2021, 6, 30)) == {2020: 184, 2021: 181}
    with pytest.raises(MethodologyError, match="outside the dates the run measures"):
        credit_parcel_vintages(AFF, facts(), 2020, 2023, date(2019, 1, 1), date(2023, 12, 31))


# --- the pilot ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pilot_project(pilot_run, tmp_path_factory):
    """A copy of the pilot store (no earlier issuances) with an afforestation project under CCER-14-001-V01."""
    from eco_value.exchange.projects import create_project
    from eco_value.inputs.history import parcel_land_history
    from eco_value.store import Store
    from eco_value.store.models import Zone

    src_store, res = pilot_run
    d = tmp_path_factory.mktemp("credits")
    src = sqlite3.connect(src_store.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(d / "p.sqlite")
    src.backup(dst)
    for t in ("status_events", "credit_blocks", "parcel_vintages", "issuance_lines", "issuances"):
        dst.execute(f"DELETE FROM {t}")
    dst.commit()
    src.close()
    dst.close()
    store = Store(f"sqlite:///{d / 'p.sqlite'}")
    run = store.run(res.run_id)
    with store.session() as s:
        zones = s.exec(select(Zone).where(Zone.run_id == run.id, Zone.kind == "parcel")).all()
    hist = parcel_land_history(run.catalog_path, [(z.zone_id, from_wkb(z.geometry_wkb)) for z in zones])
    assert hist["snapshots"] == [2016, 2020, 2023]
    aff = sorted(p for p, h in hist["parcels"].items() if h["afforested_m2"] > 0)
    frf = sorted(p for p, h in hist["parcels"].items() if h["afforested_m2"] == 0 and h["forest_m2"][2020] > 0)[:20]
    cleared = [p for p in aff if hist["parcels"][p]["afforested_forest_m2"][2016] > 0]
    clean = [p for p in aff if p not in cleared]
    special = {"early": clean[0], "wetland": clean[1], "economic": clean[2], "small2018": clean[3]}
    rows = []
    for p in aff + frf:
        row = {"parcel_id": p, "林权证号": f"川(2019)邛崃市不动产权第{p[-5:]}号", "林种": "防护林", "造林年份": "", "湿地": "",
               "造林面积": ""}
        if p == special["early"]:
            row["造林年份"] = "2018"
        if p == special["wetland"]:
            row["湿地"] = "是"
        if p == special["economic"]:
            row["林种"] = "经济林"
        rows.append(row)
    table = d / "parcels.csv"
    with open(table, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    create_project(store, project_id="QLAFF", name="邛崃 造林碳汇 Qionglai afforestation", developer="邛崃市林业局",
                   methodology="ccer-14-001-v01", start="2020-01-01", run_id=run.id, parcel_table=table)
    small = d / "small.csv"
    small.write_text(f"parcel_id,林权证号,造林面积\n{special['small2018']},川(2017)第1号,500\n", encoding="utf-8")
    create_project(store, project_id="QL2018", name="2018 plot", developer="邛崃市林业局", methodology="ccer-14-001-v01",
                   start="2018-01-01", run_id=run.id, parcel_table=small)
    return store, run, special, cleared, frf


def test_pilot_only_parcels_passing_every_rule_are_credited(pilot_project):
    from eco_value.exchange.credits import issue_project
    from eco_value.exchange.projects import eligibility_lines, project_summary
    from eco_value.store.models import IssuanceLine

    store, run, special, cleared, frf = pilot_project
    lines = eligibility_lines(store, "QLAFF")
    by: dict[str, dict] = {}
    for ln in lines:
        by.setdefault(ln["parcel_id"], {})[ln["rule"]] = ln
    ok = {p for p, d in by.items() if all(x["passed"] for x in d.values())}
    reason = {p: {r: x["reason"] for r, x in d.items() if not x["passed"]} for p, d in by.items()}
    assert len(ok) > 20
    assert reason[special["early"]]["land_history"].startswith("afforested in 2018 (declared planting year), 2 year(s) before")
    assert reason[special["wetland"]] == {"wetland": "the parcel is declared wetland (湿地) in the land-use survey; wetland is not eligible"}
    assert reason[special["economic"]] == {"forest_category": "林种 '经济林' is excluded (经济林, economic, greening, 绿化)"}
    for p in frf:
        assert reason[p]["land_history"].startswith("forest remaining forest:"), reason[p]
    assert cleared and all("was forest in 2016" in reason[p]["land_history"] for p in cleared)
    small = {x["rule"]: x for x in eligibility_lines(store, "QL2018")}
    assert small["plot_area"]["reason"] == ("plot of 500 m² (declared planted area) is below the minimum: ≥ 667 m² for a project "
                                            "started in 2018 (in or before 2019)")
    assert small["land_history"]["reason"].startswith("cannot be established: no land-cover snapshot in or before 2015")
    summary = project_summary(store, "QLAFF")
    assert summary["eligible"] == len(ok) and summary["methodology"] == "ccer-14-001-v01"

    d = issue_project(store, "QLAFF", "2020-01-01..2023-12-31")
    assert d["status"] == "pending" and [i["vintage"] for i in d["issuances"]] == [2020, 2021, 2022, 2023]
    with store.session() as s:
        credited = {ln.parcel_id for ln in s.exec(select(IssuanceLine).where(
            IssuanceLine.issuance_id.in_([i["issuance_id"] for i in d["issuances"]]))).all()}
    assert credited == ok
    # every unit of the period adds up: credits + deductions + remainder = removals over the period
    carbon = store.table("carbon", run.id).set_index("zone_id")
    removals = sum(float(carbon.loc[p, "afforestation_tco2e_per_yr"]) for p in ok) * (run.period_end - run.period_start)
    t = d["totals"]
    closed = t["net_issued_tco2e"] + t["buffer_tco2e"] + t["baseline_tco2e"] + t["leakage_tco2e"] + \
        t["uncertainty_deduction_tco2e"] + t["remainder_tco2e"]
    assert abs(closed - removals) <= 1e-9 * removals and t["buffer_tco2e"] == 0
    assert all(b["status"] == "pending" for i in d["issuances"] for b in i["serial_blocks"])
    assert audit_log(store)["ok"], audit_log(store)["problems"]
    with pytest.raises(RegistryError, match="vintage 2024 is outside the monitoring period 2020-01-01..2023-12-31"):
        issue_project(store, "QLAFF", "2020-01-01..2023-12-31", vintage=2024)
    with pytest.raises(RegistryError, match="outside the dates run .* measures"):
        issue_project(store, "QLAFF", "2021-01-01..2024-06-30")
    with pytest.raises(RegistryError, match="already"):
        issue_project(store, "QLAFF", "2020-01-01..2023-12-31", vintage=2021)


def _validators():
    out = {}
    for n in ("unit", "issuance", "project"):
        with open(f"{SCHEMA_DIR}/{n}.v2.json", encoding="utf-8") as f:
            out[n] = jsonschema.Draft202012Validator(json.load(f), format_checker=jsonschema.FormatChecker())
    return out


def test_v2_records_validate_and_bad_ones_fail(pilot_project, tmp_path):
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.credits import issue_project, verify_issuances
    from eco_value.exchange.keys import public_key_hex
    from eco_value.exchange.registry import apply_status
    from eco_value.exchange.verify import verify

    store, run, *_ = pilot_project
    from eco_value.store.models import Issuance
    with store.session() as s:
        ids = [i.id for i in s.exec(select(Issuance).where(Issuance.project_id == "QLAFF")).all()]
    if not ids:
        ids = [i["issuance_id"] for i in issue_project(store, "QLAFF", "2020-01-01..2023-12-31")["issuances"]]
    with pytest.raises(RegistryError, match="pending .unverified. units"):
        export_bundle(store, ids[0], tmp_path / "pending")
    assert not (tmp_path / "pending").exists()
    if any(b["status"] == "pending" for b in __import__("eco_value.exchange.registry", fromlist=["x"]).issuance_summary(
            store, ids[0])["serial_blocks"]):
        verify_issuances(store, ids, "China Quality Certification Center (CQC)", "desk review and site visit", "2024-06-30")
    blk = [b for b in __import__("eco_value.exchange.registry", fromlist=["x"]).issuance_summary(store, ids[0])["serial_blocks"]
           if b["count"] >= 3][0]
    apply_status(store, [{"first": blk["first"], "last": blk["first"], "status": "retired", "beneficiary": "成都地铁",
                          "reason": "offsetting 2023 emissions"}])
    out = export_bundle(store, ids[0], tmp_path / "b")
    assert out["format"] == "eco-value-bundle/2" and out["record_counts"]["issuance"] == 4
    v = _validators()
    recs = {n: [json.loads(x) for x in (tmp_path / "b" / "records" / f"{n}s.jsonl").read_text(encoding="utf-8").splitlines()]
            for n in v}
    for n, rs in recs.items():
        for r in rs:
            assert not list(v[n].iter_errors(r)), (n, [e.message for e in v[n].iter_errors(r)][:3])
    retired = [u for u in recs["unit"] if u["unitStatus"] == "Retired"]
    assert retired and retired[0]["unitStatusReason"] == "offsetting 2023 emissions"
    assert {u["unitStatus"] for u in recs["unit"]} <= {"Held", "Retired"}
    assert recs["project"][0]["projectType"] == "Afforestation" and recs["project"][0]["coveredByNDC"] == "Inside NDC"
    assert recs["issuance"][0]["verificationApproach"] == "desk review and site visit"
    # what must fail: a retired unit without a reason, integer block bounds, statuses CAD Trust does not have
    u = dict(retired[0])
    del u["unitStatusReason"]
    assert any("unitStatusReason" in e.message for e in v["unit"].iter_errors(u))
    u = dict(recs["unit"][0], unitBlockStart=int(recs["unit"][0]["unitBlockStart"]))
    assert any("is not of type 'string'" in e.message for e in v["unit"].iter_errors(u))
    for bad in ("held", "Transferred", "listed", "pending"):
        assert list(v["unit"].iter_errors(dict(recs["unit"][0], unitStatus=bad))), bad
    assert list(v["issuance"].iter_errors({k: x for k, x in recs["issuance"][0].items() if k != "verificationApproach"}))
    assert list(v["project"].iter_errors(dict(recs["project"][0], coveredByNDC="inside NDC")))
    # the stand-alone verifier reads /2 bundles
    assert verify(tmp_path / "b", public_key_hex()) == []
    shutil.copytree(tmp_path / "b", tmp_path / "t")
    p = tmp_path / "t" / "records" / "units.jsonl"
    p.write_text(p.read_text(encoding="utf-8").replace('"unitStatus":"Held"', '"unitStatus":"held"', 1), encoding="utf-8")
    assert "hash-mismatch" in {p.check for p in verify(tmp_path / "t", public_key_hex())}


def test_v1_bundle_still_verifies_and_unknown_versions_are_named(tmp_path):
    from conftest import make_fake_run
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.keys import public_key_hex, signing_key
    from eco_value.exchange.registry import issue
    from eco_value.exchange.verify import verify
    from eco_value.store import Store

    store = Store(f"sqlite:///{tmp_path / 'v1.sqlite'}")
    d = issue(store, make_fake_run(store, [100.0, 55.5, 30.2]), 2023)
    export_bundle(store, d["issuance_id"], tmp_path / "v1")
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["bundle_format"] == "eco-value-bundle/1"
    assert verify(tmp_path / "v1", public_key_hex()) == []
    m = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    m["bundle_format"] = "eco-value-bundle/9"
    mbytes = json.dumps(m).encode("utf-8")                 # a future format, signed by the issuer
    (tmp_path / "v1" / "manifest.json").write_bytes(mbytes)
    (tmp_path / "v1" / "manifest.sig").write_text(signing_key().sign(mbytes).signature.hex())
    probs = verify(tmp_path / "v1", public_key_hex())
    assert ("unknown-format", "manifest.json", "bundle format 'eco-value-bundle/9' is not one this verifier reads "
            "(eco-value-bundle/1, eco-value-bundle/2); use a verifier of the bundle's version") in probs


def test_rounding_never_issues_a_fraction():
    for r in (0.3, 1.0, 2.9999, 17.2, 1234.567):
        for vc in credit_parcel_vintages(AFF, facts(removals={"afforestation": r, "forest_management": 0.0, "net": r}),
                                         2020, 2023, date(2020, 1, 1), date(2023, 12, 31)):
            assert 0 <= vc.remainder < 1 and vc.issued == math.floor(vc.net)


def _cli(capsys, *args) -> tuple[int, str]:
    from eco_value import cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as ex:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return (ex.value.code or 0), out + err


def test_cli_shows_eligibility_and_refuses_an_issue_without_a_period(pilot_project, capsys):
    store, run, special, *_ = pilot_project
    code, out = _cli(capsys, "explain", "QLAFF", "--project", "QLAFF", "--parcel", special["economic"], "--db", store.url)
    assert code == 0, out
    assert f"parcel {special['economic']} under CCER-14-001-V01 (project QLAFF): REFUSED" in out
    assert "[FAIL] forest_category: 林种 '经济林' is excluded" in out and "[pass] tenure: tenure certificate" in out
    code, out = _cli(capsys, "project", "show", "QLAFF", "--db", store.url)
    assert code == 0 and "methodology: ccer-14-001-v01" in out
    code, out = _cli(capsys, "issue", "QLAFF", "--db", store.url)
    assert code == 2 and "give --vintage YEAR (credits of a run), or --monitoring START..END" in out
    code, out = _cli(capsys, "issue", "QLAFF", "--monitoring", "2020-01-01..2023-12-31", "--verification-body", "CQC",
                     "--db", store.url)
    assert code == 2 and "verification needs all three" in out
