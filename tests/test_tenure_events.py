"""Issue 13, the two open parts, on the 300 m pilot in real formats:

* recorded change reasons (小班 BHYY: 20 森林采伐, 50 毁林开垦) override the land-cover differencing in the
  carbon engine's land-use-change categories — a stand whose land cover stays forest shows up as
  harvest / deforestation with the values worked out by hand from its two inventory records;
* 林权 records (``[sources.tenure]``) are carried into the parcels (zone rows), the projects' eligibility
  (a use right ending before the crediting period does: refused under CCER-14-001, flagged under
  fm-bau) and the exported CAD Trust records (issuance parcel lines, unit blocks).
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
from rasterio.features import rasterize

from eco_value.carbon import LUCC, lucc_with_events
from eco_value.errors import InputError
from eco_value.rules.events import change_events

RES_M = 300.0
HARVEST, DEFOREST = "20", "50"      # 森林采伐, 毁林开垦 (raster_inputs/fieldmaps/change-reasons.toml)


# --- the pure function ------------------------------------------------------------------------------
def test_recorded_events_override_the_differencing_where_recorded():
    lut = change_events().lucc_lut(LUCC)
    ids = change_events().ids
    lucc = xr.DataArray(np.array([[1, 1, 2, 4], [3, 1, 0, 1]], dtype="uint8"), dims=("y", "x"))
    ev = xr.DataArray(np.array([[0, ids["harvest"], ids["harvest"], ids["deforestation"]],
                                [ids["afforestation"], ids["disturbance"], ids["harvest"], 255]], dtype="uint8"),
                      dims=("y", "x"))
    out = lucc_with_events(lucc, ev, lut)
    # harvest/deforestation/afforestation force their category; disturbance and no event keep the
    # differencing; nodata (0) stays nodata; the event layer's nodata (255) forces nothing
    assert out.values.tolist() == [[1, 5, 5, 3], [2, 1, 0, 1]]
    assert out.dtype == np.uint8 and LUCC["harvest"] == 5


# --- the pilot with change reasons and tenure --------------------------------------------------------
def _inventory(d: Path, year: int):
    from eco_value.inputs import inventory as inv

    return inv.read_inventory(d / f"xiaoban_{year}.shp", species=d / "species.csv")


def _rewrite(shp: Path, gdf: gpd.GeoDataFrame) -> None:
    for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        shp.with_suffix(ext).unlink()
    gdf.to_file(shp, driver="ESRI Shapefile", encoding="GBK", engine="pyogrio")
    shp.with_suffix(".cpg").write_text("GBK", encoding="ascii")


def _pick_stands(d: Path):
    """Two 小班 that stay forest of the same type with the same volume species at both dates, fully
    inside the county and in different parcels: the harvest one and the deforestation one."""
    from eco_value.inputs.catalog import load_catalog
    from eco_value.inputs.readers import open_layers
    from eco_value.roles import LAND_COVER_T1, LAND_COVER_T2
    from eco_value.rules.ecosystem import ecosystem_types

    cat = load_catalog(d / "catalog.toml")
    layers, grid = open_layers(cat, keys=[LAND_COVER_T1, LAND_COVER_T2])
    lc1, lc2 = layers[LAND_COVER_T1].values, layers[LAND_COVER_T2].values
    forest = ecosystem_types().ids_under("forest")
    t1, t2 = _inventory(d, 2020), _inventory(d, 2023)
    m = t1.merge(t2.drop(columns="geometry"), on="xiaoban_id", suffixes=("", "_2"))
    m = m[(m.species_group == m.species_group_2) & m.species_group.isin(["cunninghamia", "pinus_massoniana", "broadleaf"])
          & (m.volume_m3_ha > 0) & (m.volume_m3_ha_2 > m.volume_m3_ha)]
    county = gpd.read_file(d / "boundary.gpkg").to_crs(grid.crs).union_all().buffer(-1.0)
    parcels = gpd.read_file(d / "parcels.gpkg").to_crs(grid.crs)
    label = rasterize([(g, i + 1) for i, g in enumerate(m.geometry)], out_shape=grid.shape, transform=grid.transform,
                      fill=0, dtype="int32")
    picked = []
    for i in np.argsort(-m["area_ha"].to_numpy(), kind="stable"):
        r = m.iloc[i]
        px = label == i + 1
        if px.sum() < 4 or not r.geometry.within(county) or not (lc1[px] == lc2[px]).all() \
                or not np.isin(lc1[px], forest).all():
            continue
        parcel = parcels[parcels.contains(r.geometry.representative_point())]["parcel_id"].tolist()
        if len(parcel) != 1 or any(parcel[0] == p["parcel"] for p in picked):
            continue
        picked.append({"row": r, "pixels": int(px.sum()), "parcel": parcel[0]})
        if len(picked) == 2:
            return picked, grid
    raise AssertionError("the pilot has no two suitable stands")


def _sink_by_hand(r, rules, years: float) -> float:
    """t CO2e/yr of a stand that stays forest of one type with one species: only the stem volume
    changes, so ((V2 - V1) * D * BEF * (1 + R) * CF / dt) * CO2/C * area."""
    p = f"carbon.species.{r.species_group}"
    k = rules.value(f"{p}.wood_density") * rules.value(f"{p}.bef") * (1 + rules.value(f"{p}.root_shoot")) \
        * rules.value(f"{p}.carbon_fraction")
    return (r.volume_m3_ha_2 - r.volume_m3_ha) * k / years * rules.value("constants.molar_ratio_co2_c")


TENURE_HEADER = ["BDCQZH", "LDSYQSSJ", "LDSYJSSJ", "SLLMSYQR", "SYQMJ", "LB", "XB"]


@pytest.fixture(scope="module")
def pilots(tmp_path_factory):
    """The 300 m real-format pilot as written (``plain``) and a copy whose 2023 小班 record a harvest and a
    deforestation on two stands that stay forest, with 林权 records for those two 小班 (``events``)."""
    from eco_value.inputs.pilot import generate_pilot

    base = tmp_path_factory.mktemp("te")
    plain = base / "plain"
    generate_pilot("qionglai", plain, resolution_m=RES_M, seed=7, fmt="real")
    (h, dfo), grid = _pick_stands(plain)
    ev = base / "events"
    shutil.copytree(plain, ev)
    shp = ev / "xiaoban_2023.shp"
    gdf = gpd.read_file(shp, encoding="gbk")
    key = gdf["LIN_BAN"].astype(str) + "/" + gdf["XIAO_BAN"].astype(str)
    gdf["BHYY"] = ""
    for s, code in ((h, HARVEST), (dfo, DEFOREST)):
        gdf.loc[key == f"{s['row'].lin_ban}/{s['row'].xiao_ban}", "BHYY"] = code
    assert (gdf["BHYY"] != "").sum() == 2
    _rewrite(shp, gdf)
    # the harvested stand fully certified, the deforested one half (a partly covered 小班), and
    # UNMATCHED_RECORDS records whose LB/XB name no 小班
    rows = [["川(2020)邛崃市不动产权第0000101号", "2010-01-01", "2069-12-31", "邛崃市南宝山镇两河村股份经济合作联合社",
             h["row"].area_ha * 15, int(h["row"].lin_ban), int(h["row"].xiao_ban)],
            ["川(2020)邛崃市不动产权第0000102号", "2000年7月1日", "20300630", "张三",
             dfo["row"].area_ha * 15 / 2, dfo["row"].lin_ban, dfo["row"].xiao_ban]]
    rows += [[f"川(2021)邛崃市不动产权第00009{k:02d}号", "2015-01-01", "2064-12-31", "李四", 12.5, "9999", f"{k:06d}"]
             for k in range(1, UNMATCHED_RECORDS + 1)]
    with open(ev / "linquan.csv", "w", encoding="gbk", newline="") as f:
        w = csv.writer(f)
        w.writerow(TENURE_HEADER)
        w.writerows(rows)
    _set_tenure(ev / "catalog.toml", {"path": "linquan.csv"})
    return plain, ev, h, dfo, grid


UNMATCHED_RECORDS = 7


def _set_tenure(catalog: Path, spec: dict | None) -> None:
    import tomllib

    import tomli_w

    cat = tomllib.loads(catalog.read_text(encoding="utf-8"))
    cat["sources"].pop("tenure", None)
    if spec is not None:
        cat["sources"]["tenure"] = spec
    catalog.write_text(tomli_w.dumps(cat), encoding="utf-8")


def _run(catalog: Path, db: Path, out: Path):
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    store = Store(f"sqlite:///{db}")
    return store, run_valuation(catalog, store, RunOptions(out_dir=out, mc_draws=20, write_rasters=False))


@pytest.fixture(scope="module")
def runs(pilots, tmp_path_factory):
    plain, ev, *_ = pilots
    t = tmp_path_factory.mktemp("runs")
    return _run(plain / "catalog.toml", t / "plain.sqlite", t / "plain"), _run(ev / "catalog.toml", t / "ev.sqlite", t / "ev")


def test_change_reasons_give_harvest_and_deforestation_on_stands_that_stay_forest(pilots, runs):
    from eco_value.rules import load_rules

    _plain, _ev, h, dfo, grid = pilots
    (_s0, r0), (_s1, r1) = runs
    rules = load_rules()
    years = 2023 - 2020
    c0, c1 = r0.summary["carbon"], r1.summary["carbon"]
    a_h, a_d = h["pixels"] * grid.pixel_area_ha, dfo["pixels"] * grid.pixel_area_ha
    s_h, s_d = _sink_by_hand(h["row"], rules, years) * a_h, _sink_by_hand(dfo["row"], rules, years) * a_d
    assert s_h != 0 and s_d != 0
    # without change reasons nothing is harvest; the stands' land cover stays forest
    assert c0["by_lucc_area_ha"]["harvest"] == 0.0 and c0["by_lucc_tco2e_per_yr"]["harvest"] == 0.0
    # with them: the harvested stand is its own category, the deforested one joins deforestation
    assert c1["by_lucc_area_ha"]["harvest"] == pytest.approx(a_h, rel=1e-12)
    assert c1["by_lucc_tco2e_per_yr"]["harvest"] == pytest.approx(s_h, rel=1e-9)
    assert c1["by_lucc_area_ha"]["deforestation"] - c0["by_lucc_area_ha"]["deforestation"] == pytest.approx(a_d, rel=1e-9)
    assert c1["by_lucc_tco2e_per_yr"]["deforestation"] - c0["by_lucc_tco2e_per_yr"]["deforestation"] == \
        pytest.approx(s_d, rel=1e-9, abs=1e-9 * abs(c0["by_lucc_tco2e_per_yr"]["deforestation"]))
    frf = c0["by_lucc_tco2e_per_yr"]["forest_remaining_forest"] - s_h - s_d
    assert c1["by_lucc_tco2e_per_yr"]["forest_remaining_forest"] == pytest.approx(frf, rel=1e-9)
    # only the attribution changes: stocks and the net sink are the stock difference either way
    assert c1["net_sink_tco2e_per_yr"] == pytest.approx(c0["net_sink_tco2e_per_yr"], rel=1e-12)
    assert c1["stock_tc"] == pytest.approx(c0["stock_tc"], rel=1e-12)


def test_parcels_carry_their_tenure_records(pilots, runs):
    _plain, _ev, h, dfo, _grid = pilots
    (s0, r0), (s1, r1) = runs
    z = s1.table("zones", r1.run_id, "parcel").set_index("zone_id")
    ph, pd_ = z.loc[h["parcel"]], z.loc[dfo["parcel"]]
    assert ph.tenure_certificate == "川(2020)邛崃市不动产权第0000101号"
    assert ph.tenure_holder == "邛崃市南宝山镇两河村股份经济合作联合社"
    assert (ph.use_right_start, ph.use_right_end) == ("2010-01-01", "2069-12-31")
    assert ph.tenure_area_mu == pytest.approx(h["row"].area_ha * 15, rel=1e-12)
    assert (pd_.tenure_certificate, pd_.tenure_holder, pd_.use_right_start, pd_.use_right_end) == \
        ("川(2020)邛崃市不动产权第0000102号", "张三", "2000-07-01", "2030-06-30")
    others = z.drop(index=[h["parcel"], dfo["parcel"]])
    assert (others.tenure_certificate == "").all() and others.tenure_area_mu.isna().all()
    z0 = s0.table("zones", r0.run_id, "parcel")   # the pilot as written: its SYNTHETIC 林权 file
    assert z0.tenure_certificate.str.contains("合成不动产权").sum() > 100
    assert z0.tenure_holder[z0.tenure_certificate != ""].str.endswith("(SYNTHETIC)").all()
    c = s1.table("carbon", r1.run_id, "parcel").set_index("zone_id")
    assert c.loc[h["parcel"], "harvest_tco2e_per_yr"] != 0.0


def _store_copy(store, d: Path):
    from eco_value.store import Store

    src = sqlite3.connect(store.url.removeprefix("sqlite:///"))
    dst = sqlite3.connect(d / "p.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    return Store(f"sqlite:///{d / 'p.sqlite'}")


def test_use_right_ending_before_the_crediting_period_refused_or_flagged_and_exported(pilots, runs, tmp_path, key_dir):
    from eco_value.exchange.bundle import export_bundle
    from eco_value.exchange.credits import issue_project, verify_issuances
    from eco_value.exchange.keys import public_key_hex
    from eco_value.exchange.projects import create_project, eligibility_lines
    from eco_value.exchange.verify import verify

    _plain, _ev, h, dfo, _grid = pilots
    _r0, (s1, r1) = runs
    store = _store_copy(s1, tmp_path)
    table = tmp_path / "parcels.csv"
    table.write_text(f"parcel_id,基线碳汇量\n{h['parcel']},-1000\n{dfo['parcel']},-1000\n", encoding="utf-8")
    kw = dict(name="邛崃 森林经营", developer="邛崃市林业局", start="2020-01-01", run_id=r1.run_id, parcel_table=table,
              crediting_end="2049-12-31")
    create_project(store, project_id="QLFM", methodology="fm-bau-v01", **kw)
    create_project(store, project_id="QLCC", methodology="ccer-14-001-v01", **kw)
    why = ("the use right (林地使用权, 川(2020)邛崃市不动产权第0000102号) ends 2030-06-30, before the crediting period ends "
           "(2049-12-31): removals after 2030-06-30 are not the holder's to sell")
    cc = {(x["parcel_id"], x["rule"]): x for x in eligibility_lines(store, "QLCC")}
    assert cc[(dfo["parcel"], "use_right")] == {"parcel_id": dfo["parcel"], "rule": "use_right", "passed": False, "reason": why}
    assert cc[(h["parcel"], "use_right")]["passed"] and cc[(h["parcel"], "tenure")]["reason"].startswith(
        "tenure certificate 川(2020)邛崃市不动产权第0000101号")
    fm = {(x["parcel_id"], x["rule"]): x for x in eligibility_lines(store, "QLFM")}
    assert fm[(dfo["parcel"], "use_right")] == {"parcel_id": dfo["parcel"], "rule": "use_right", "passed": True,
                                                "reason": "flagged: " + why}
    ok = {p for p in (h["parcel"], dfo["parcel"]) if all(x["passed"] for (q, _r), x in fm.items() if q == p)}
    assert ok == {h["parcel"], dfo["parcel"]}, {k: v for k, v in fm.items() if not v["passed"]}
    d = issue_project(store, "QLFM", "2020-01-01..2023-12-31")
    ids = [i["issuance_id"] for i in d["issuances"]]
    verify_issuances(store, ids, "CQC", "desk review", "2024-06-30")
    out = export_bundle(store, ids[0], tmp_path / "b")
    assert out["format"] == "eco-value-bundle/2"
    recs = {n: [json.loads(x) for x in (tmp_path / "b" / "records" / f"{n}s.jsonl").read_text(encoding="utf-8").splitlines()]
            for n in ("unit", "issuance")}
    lines = {ln["parcelId"]: ln for ln in recs["issuance"][0]["parcelLines"]}
    assert {k: lines[h["parcel"]][k] for k in ("tenureCertificate", "tenureHolder", "useRightStart", "useRightEnd")} == {
        "tenureCertificate": "川(2020)邛崃市不动产权第0000101号", "tenureHolder": "邛崃市南宝山镇两河村股份经济合作联合社",
        "useRightStart": "2010-01-01", "useRightEnd": "2069-12-31"}
    assert lines[h["parcel"]]["tenureAreaMu"] == pytest.approx(h["row"].area_ha * 15, rel=1e-12)
    assert "useRightFlag" not in lines[h["parcel"]] and lines[dfo["parcel"]]["useRightFlag"] == why
    certs = {c for u in recs["unit"] for c in u["tenureCertificates"]}
    assert certs <= {"川(2020)邛崃市不动产权第0000101号", "川(2020)邛崃市不动产权第0000102号"} and certs
    assert verify(tmp_path / "b", public_key_hex()) == []


def test_unmapped_change_reason_is_refused_naming_file_field_code_and_count(pilots, tmp_path):
    from eco_value.inputs.sources import check_sources
    from eco_value.inputs.catalog import load_catalog

    _plain, ev, *_ = pilots
    d = tmp_path / "p"
    shutil.copytree(ev, d)
    shp = d / "xiaoban_2023.shp"
    gdf = gpd.read_file(shp, encoding="gbk")
    gdf.loc[gdf.index[:3], "BHYY"] = "99"
    _rewrite(shp, gdf)
    probs = check_sources(load_catalog(d / "catalog.toml"))
    assert len(probs) == 1, probs
    p = probs[0]
    assert p.kind == "unmapped-code" and p.file.endswith("xiaoban_2023.shp") and p.layer == "BHYY"
    assert "3 小班 have change-reason codes not in the table: '99' (3×)" in p.problem
    assert "change-reasons.toml" in p.fix
    with pytest.raises(InputError, match="'99' \\(3×\\)"):
        from eco_value.pipeline import RunOptions, run_valuation
        from eco_value.store import Store

        run_valuation(d / "catalog.toml", Store(f"sqlite:///{tmp_path / 'r.sqlite'}"),
                      RunOptions(out_dir=tmp_path / "out", mc_draws=20))
    assert not (tmp_path / "out").exists()


def test_unmatched_records_and_partly_covered_xiaoban_are_reported_with_counts_and_first_ids(pilots, runs):
    """Nothing is dropped silently: the run's input_warnings and validate's warnings name the 7 records
    whose LB/XB match no 小班 (first 5 certificates) and the one 小班 its certificate covers only half of."""
    from eco_value.inputs.catalog import load_catalog
    from eco_value.inputs.validate import validation_report

    _plain, ev, _h, dfo, _grid = pilots
    (_s0, r0), (_s1, r1) = runs
    errors, warnings = validation_report(load_catalog(ev / "catalog.toml"))
    assert errors == []
    w = {p.kind: p for p in warnings if p.kind.startswith("tenure")}
    assert set(w) == {"tenure-unmatched", "tenure-partial"}
    un, part = w["tenure-unmatched"], w["tenure-partial"]
    assert un.file.endswith("linquan.csv") and un.layer == "BDCQZH"
    assert un.problem.startswith(f"{UNMATCHED_RECORDS} of {UNMATCHED_RECORDS + 2} tenure record(s) match no single 小班 "
                                 f"({UNMATCHED_RECORDS} with no 小班, 0 ambiguous)")
    first = [f"川(2021)邛崃市不动产权第00009{k:02d}号" for k in range(1, 6)]
    assert all(c in un.problem for c in first) and "川(2021)邛崃市不动产权第0000906号" not in un.problem
    assert f"… ({UNMATCHED_RECORDS - 5} more)" in un.problem and "no 小班 with LB/XB 9999/000001" in un.problem
    mu = dfo["row"].area_ha * 15
    assert part.layer == "SYQMJ" and part.problem.startswith("1 of 2 小班 with certificates are only partly covered")
    assert f"{dfo['row'].xiaoban_id} ({mu / 2:.4g} of {mu:.4g} 亩)" in part.problem
    # the same two in the run's input warnings; the pilot's own synthetic file matches and covers everything
    iw = r1.summary["input_warnings"]
    assert [x for x in iw if x.startswith("[tenure-")] == [str(un), str(part)]
    assert not [x for x in r0.summary["input_warnings"] if x.startswith("[tenure-")]


def test_catalog_names_its_own_change_reason_map(pilots, tmp_path):
    """A bureau's local code (here 'F3' for 皆伐) is refused against the default table; the catalog names its
    own map (change_reasons on the t2 inventory) and the stand then carries the harvest event."""
    import tomllib

    from eco_value.inputs.catalog import load_catalog
    from eco_value.inputs.readers import open_layers
    from eco_value.inputs.sources import check_sources
    from eco_value.roles import CHANGE_EVENT_T2

    _plain, ev, h, dfo, _grid = pilots
    d = tmp_path / "p"
    shutil.copytree(ev, d)
    shp = d / "xiaoban_2023.shp"
    gdf = gpd.read_file(shp, encoding="gbk")
    gdf.loc[gdf["BHYY"] == HARVEST, "BHYY"] = "F3"
    _rewrite(shp, gdf)
    p = check_sources(load_catalog(d / "catalog.toml"))
    assert len(p) == 1 and p[0].kind == "unmapped-code" and "'F3' (1×)" in p[0].problem
    assert "fieldmaps/change-reasons.toml" in p[0].fix
    (d / "bureau-reasons.toml").write_text('[reasons."F3"]\nevent = "harvest"\nlabel_zh = "皆伐"\n'
                                           '[reasons."50"]\nevent = "deforestation"\nlabel_zh = "毁林开垦"\n',
                                           encoding="utf-8")
    cat = tomllib.loads((d / "catalog.toml").read_text(encoding="utf-8"))
    cat["sources"]["inventory_t2"]["change_reasons"] = "bureau-reasons.toml"
    import tomli_w

    (d / "catalog.toml").write_text(tomli_w.dumps(cat), encoding="utf-8")
    c = load_catalog(d / "catalog.toml")
    assert check_sources(c) == []
    ev_layer = open_layers(c, keys=[CHANGE_EVENT_T2])[0][CHANGE_EVENT_T2].values
    ids = change_events().ids
    assert int((ev_layer == ids["harvest"]).sum()) == h["pixels"]
    assert int((ev_layer == ids["deforestation"]).sum()) == dfo["pixels"]
    # a code the bureau's map lacks is refused naming that map
    (d / "bureau-reasons.toml").write_text('[reasons."50"]\nevent = "deforestation"\n', encoding="utf-8")
    p = check_sources(load_catalog(d / "catalog.toml"))
    assert len(p) == 1 and "'F3' (1×)" in p[0].problem and str(d / "bureau-reasons.toml") in p[0].fix


def test_calculation_package_strata_use_the_recorded_change_events(pilots, runs, tmp_path):
    """The package's strata take the land-use change as the engine does (carbon.lucc_with_events): the
    harvest-recorded stand, whose land cover stays forest, is the package's harvest stratum, all of its
    area (a project of every parcel the stand touches, so its pixels are covered exactly once)."""
    from eco_value.exchange.package import build_package
    from eco_value.exchange.projects import create_project

    _plain, ev, h, _dfo, grid = pilots
    (s0, r0), (s1, r1) = runs
    parcels = gpd.read_file(ev / "parcels.gpkg").to_crs(grid.crs)
    ids = sorted(parcels.loc[parcels.intersects(h["row"].geometry), "parcel_id"])
    assert h["parcel"] in ids
    table = tmp_path / "parcels.csv"
    table.write_text("parcel_id,基线碳汇量\n" + "".join(f"{p},-1000\n" for p in ids), encoding="utf-8")
    strata = {}
    for name, (store, run) in (("events", (s1, r1)), ("plain", (s0, r0))):
        (tmp_path / name).mkdir()
        st = _store_copy(store, tmp_path / name)
        create_project(st, project_id="QLH", methodology="fm-bau-v01", name="邛崃 采伐", developer="邛崃市林业局",
                       start="2020-01-01", run_id=run.run_id, parcel_table=table, crediting_end="2049-12-31")
        strata[name] = build_package(st, "QLH").tables["strata.csv"][1]
    harvest = [r for r in strata["events"] if r["land_use_change"] == "harvest"]
    a_h = h["pixels"] * grid.pixel_area_ha
    rel = 1e-7   # the parcels' coverage fractions are float32 (exact-extract weights) summed over the stand's pixels
    assert len(harvest) == 1 and harvest[0]["area_ha"] == pytest.approx(a_h, rel=rel)
    assert harvest[0]["species_group_t2"] == h["row"].species_group_2
    assert harvest[0]["ecosystem_type_t1"] == harvest[0]["ecosystem_type_t2"]
    # forest management credits harvested land too (its losses count), on the project's eligible parcels
    assert 0 < harvest[0]["credited_area_ha"] <= harvest[0]["area_ha"]
    # without change reasons the same pixels are forest remaining forest, and nothing is harvest
    assert not [r for r in strata["plain"] if r["land_use_change"] == "harvest"]

    def frf(rows):
        return sum(r["area_ha"] for r in rows if r["land_use_change"] == "forest_remaining_forest")

    assert frf(strata["plain"]) - frf(strata["events"]) == pytest.approx(a_h, rel=rel)
