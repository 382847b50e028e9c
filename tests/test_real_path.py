"""The pilot through the real-format path (小班 shapefiles, DLTB, MOD16-like stack, daily NetCDF via
``[sources]``) equals the raster path it replaces (``catalog-raster.toml``, the same data as rasters).

Tolerance: 1e-9 relative (of the county total of each service / of the sink's absolute sum). Why it can
be that tight: the synthetic stands and 图斑 are the pilot's rasters polygonised along pixel edges, so
under the centre-of-pixel rule every pixel burns back to its own value (zero rasterisation error);
land cover differs only in the cropland sub-types DLTB carries (0101 paddy, 0201 orchard, 0202 tea
garden, all under ``cropland``, which the rule set values through their parent); volumes pass a DBF's
decimal text (~1e-16 relative); the products are the same decoded sums.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eco_value.inputs.pilot import generate_pilot

RES_M = 300.0
REL = 1e-9


@pytest.fixture(scope="module")
def real_pilot(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("real") / "qionglai"
    generate_pilot("qionglai", d, resolution_m=RES_M, seed=7, fmt="real")
    return d


def _run(catalog: Path, tmp: Path, name: str):
    from eco_value.pipeline import RunOptions, run_valuation
    from eco_value.store import Store

    store = Store(f"sqlite:///{tmp / (name + '.sqlite')}")
    res = run_valuation(catalog, store, RunOptions(out_dir=tmp / name, mc_draws=50, write_rasters=False))
    return store.table("services", res.run_id), store.table("carbon", res.run_id), res


def test_real_files_are_in_real_formats(real_pilot):
    import geopandas as gpd

    assert (real_pilot / "xiaoban_2020.cpg").read_text() == "GBK"
    raw = (real_pilot / "xiaoban_2020.dbf").read_bytes()
    assert "幼龄林".encode("gbk") in raw or "中龄林".encode("gbk") in raw
    xb = gpd.read_file(real_pilot / "xiaoban_2020.shp", encoding="gbk")
    assert {"XIAN", "LIN_BAN", "XIAO_BAN", "DI_LEI", "YOU_SHI_SZ", "MEI_GQ_XJ", "MIAN_JI"} <= set(xb.columns)
    assert set(xb["DI_LEI"]) <= {"030100", "030200", "030301"} and xb["DI_LEI"].str.len().eq(6).all()
    dltb = gpd.read_file(real_pilot / "dltb_2020.gpkg", layer="DLTB")
    assert {"0201", "0202", "0101", "0301"} <= set(dltb["DLBM"])
    assert (dltb["TBDLMJ"] < dltb["TBMJ"]).any() and (dltb["TBDLMJ"] <= dltb["TBMJ"] + 1e-6).all()
    assert len(list((real_pilot / "mod16").glob("MOD16A2_2023_*.tif"))) == 46
    import xarray as xr

    with xr.open_dataset(real_pilot / "precip_daily_2023.nc", engine="h5netcdf") as ds:
        assert ds.sizes["time"] == 365
    assert "SYNTHETIC" in (real_pilot / "catalog.toml").read_text()


@pytest.fixture(scope="module")
def raster_run(real_pilot, tmp_path_factory):
    return _run(real_pilot / "catalog-raster.toml", tmp_path_factory.mktemp("rast"), "raster")


def _assert_equal_runs(real, rast) -> None:
    (s_real, c_real, r_real), (s_rast, c_rast, r_rast) = real, rast
    key = ["zone_kind", "zone_id", "service"]
    m = pd.merge(s_real, s_rast, on=key, suffixes=("_real", "_rast"), validate="one_to_one")
    assert len(m) == len(s_rast) == len(s_real) and (m.zone_kind == "parcel").sum() > 1000
    county = s_rast[s_rast.zone_kind == "county"].set_index("service")["value_cny"].abs()
    scale = m["service"].map(county).clip(lower=1.0)
    diff = (m["value_cny_real"] - m["value_cny_rast"]).abs() / scale
    worst = m.loc[diff.idxmax(), key].tolist()
    assert diff.max() <= REL, f"GEP differs by {diff.max():.3g} of the county total at {worst}"
    ck = ["zone_kind", "zone_id"]
    mc = pd.merge(c_real, c_rast, on=ck, suffixes=("_real", "_rast"), validate="one_to_one")
    for col in ("net_sink_tco2e_per_yr", "stock_t1_tc", "stock_t2_tc"):
        tot = c_rast.loc[c_rast.zone_kind == "parcel", col].abs().sum()
        assert tot > 0
        d = (mc[f"{col}_real"] - mc[f"{col}_rast"]).abs().max() / tot
        assert d <= REL, f"{col} differs by {d:.3g} of its parcel sum"
    assert r_real.summary["gep"]["total_cny"] == pytest.approx(r_rast.summary["gep"]["total_cny"], rel=REL)


def test_real_path_equals_raster_path(real_pilot, raster_run, tmp_path):
    _assert_equal_runs(_run(real_pilot / "catalog.toml", tmp_path, "real"), raster_run)


def test_catalog_init_on_the_pilots_real_files_validates_and_runs(real_pilot, raster_run, tmp_path, capsys,
                                                                  monkeypatch):
    d = real_pilot
    out = tmp_path / "cat" / "catalog.toml"
    code, o, e = ev(capsys, monkeypatch, "catalog", "init", "--out", out, "--json",
                    "--inventory", d / "xiaoban_2023.shp", "--inventory-t1", d / "xiaoban_2020.shp",
                    "--species", d / "species.csv", "--landuse", d / "dltb_2023.gpkg",
                    "--landuse-t1", d / "dltb_2020.gpkg", "--tenure", d / "linquan_2023.csv", "--dem", d / "dem.tif",
                    "--precip", d / "precip_daily_2023.nc", "--aet", d / "mod16",
                    "--erosivity", d / "erosivity.tif", "--erodibility", d / "erodibility.tif", "--fvc", d / "fvc.tif",
                    "--bulk-density", d / "bulk_density.tif", "--boundary", d / "boundary.gpkg",
                    "--townships", d / "townships.gpkg", "--parcels", d / "parcels.gpkg",
                    "--provisioning", d / "provisioning.csv", "--tourism", d / "tourism.csv", "--region", "qionglai")
    import json

    rep = json.loads(o)
    assert code == 0 and rep["ok"], e + o
    status = {r["layer"]: r["status"] for r in rep["layers"]}
    assert status["volume@t1"] == "source" and status["land_cover@t2"] == "source" and status["dem"] == "file"
    assert "missing" not in status.values() and status["tenure"] == "source"
    run = _run(out, tmp_path, "init")
    _assert_equal_runs(run, raster_run)
    # the parcels carry the certificates of their 小班 (the synthetic file certifies every 3rd 小班 of 2023)
    import tomllib

    from eco_value.store import Store

    ten = tomllib.loads(out.read_text(encoding="utf-8"))["sources"]["tenure"]
    assert ten["path"].endswith("/linquan_2023.csv") and (ten["kind"], ten["inventory"]) == ("tenure", "inventory_t2")
    z = Store(f"sqlite:///{tmp_path / 'init.sqlite'}").table("zones", run[2].run_id, "parcel")
    recs = pd.read_csv(d / "linquan_2023.csv", encoding="gbk", dtype=str)
    certs = {c for s in z["tenure_certificate"] for c in s.split(";") if c}
    assert len(recs) > 100 and certs == set(recs["BDCQZH"])
    assert z.loc[z.tenure_certificate != "", "tenure_area_mu"].gt(0).all()
    assert z.loc[z.tenure_certificate == "", "tenure_area_mu"].isna().all()
    assert not any("tenure" in w for w in run[2].summary["input_warnings"])   # every record matched, every 小班 covered


def test_catalog_init_reports_missing_and_derived(real_pilot, tmp_path, capsys, monkeypatch):
    out = tmp_path / "c.toml"
    code, o, _e = ev(capsys, monkeypatch, "catalog", "init", "--out", out, "--json", "--period", "2020", "2023",
                     "--inventory", real_pilot / "xiaoban_2023.shp", "--species", real_pilot / "species.csv",
                     "--dem", real_pilot / "dem.tif")
    import json

    rep = json.loads(o)
    status = {r["layer"]: (r["status"], r["detail"]) for r in rep["layers"]}
    assert code == 2 and not rep["ok"] and out.exists()
    assert status["land_cover@t2"][0] == "derived" and "DI_LEI" in status["land_cover@t2"][1]
    assert status["volume@t1"][0] == "missing" and "--inventory-t1" in status["volume@t1"][1]
    missing = sorted(k for k, (st, _d) in status.items() if st == "missing")
    assert missing == sorted(["land_cover@t1", "forest_type@t1", "volume@t1", "precip", "aet", "erosivity",
                              "erodibility", "fvc", "bulk_density", "boundary", "townships", "parcels",
                              "provisioning", "tourism"])
    assert {p["layer"] for p in rep["problems"]} == set(missing)


def ev(capsys, monkeypatch, *args):
    from eco_value import cli

    monkeypatch.setattr(sys, "argv", ["eco-value", *map(str, args)])
    monkeypatch.setattr(cli.err, "width", 100000)
    monkeypatch.setattr(cli.console, "width", 100000)
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    c = capsys.readouterr()
    return code, c.out, c.err


def _break(d: Path, how: str) -> None:
    import geopandas as gpd

    shp = d / "xiaoban_2020.shp"
    gdf = gpd.read_file(shp, encoding="gbk")
    if how == "unmapped-di-lei":
        gdf.loc[gdf.index[:3], "DI_LEI"] = "039999"
    elif how == "missing-field":
        gdf = gdf.drop(columns="MEI_GQ_XJ")
    elif how == "duplicate-id":
        gdf.loc[gdf.index[1], ["LIN_BAN", "XIAO_BAN"]] = gdf.loc[gdf.index[0], ["LIN_BAN", "XIAO_BAN"]].to_numpy()
    if how == "wrong-encoding":   # GBK bytes, the .cpg says UTF-8
        (d / "xiaoban_2020.cpg").write_text("UTF-8", encoding="ascii")
        return
    for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
        shp.with_suffix(ext).unlink()
    gdf.to_file(shp, driver="ESRI Shapefile", encoding="GBK", engine="pyogrio")
    shp.with_suffix(".cpg").write_text("GBK", encoding="ascii")


BAD = {
    # how: (words the one error must contain)
    "unmapped-di-lei": ("xiaoban_2020.shp", "DI_LEI", "'039999' (3×)", "dilei-6digit"),
    "missing-field": ("xiaoban_2020.shp", "MEI_GQ_XJ", "inventory-national"),
    "duplicate-id": ("xiaoban_2020.shp", "(2×)", "小班"),
    "wrong-encoding": ("xiaoban_2020", "UTF-8"),
}


@pytest.mark.parametrize("how", sorted(BAD))
def test_bad_inventory_one_clear_error_and_nothing_written(real_pilot, tmp_path, capsys, monkeypatch, how):
    d = tmp_path / "pilot"
    shutil.copytree(real_pilot, d)
    _break(d, how)
    code, _out, err = ev(capsys, monkeypatch, "validate", d / "catalog.toml")
    assert code == 2, err
    problems = [ln for ln in err.splitlines() if ln.strip().startswith("- ")]
    assert len(problems) == 1, err
    for word in BAD[how]:
        assert word in problems[0], (word, problems[0])
    assert "Traceback" not in err
    db = tmp_path / "r.sqlite"
    code, _out, err = ev(capsys, monkeypatch, "run", d / "catalog.toml", "--db", f"sqlite:///{db}",
                         "--out", tmp_path / "results", "--mc-draws", "20")
    assert code == 2 and "Traceback" not in err
    for word in BAD[how]:
        assert word in err
    assert not (tmp_path / "results").exists() and not (d / "results").exists()
