"""Inputs that used to pass `validate` and then gave absurd stored accounts or an "internal error" in `run`
(issue 12): every table the run reads is checked against limits kept as data, nodata-like pixels inside
the region are counted per layer, and each malformed input is named with its file, field and fix.

Each test copies the 300 m pilot (built once for this module), breaks one thing, checks the exact
problem `validate` reports, and checks that `run` refuses it with exit 2 and stores nothing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.validate import validate_catalog, validation_report
from eco_value.resources import data_dir

from conftest import cli_in_process as cli


def _problems(d):
    return validate_catalog(load_catalog(d / "catalog.toml"))


def _only(d, kind):
    probs = _problems(d)
    hits = [p for p in probs if p.kind == kind]
    assert hits, f"no [{kind}] among {[str(p) for p in probs]}"
    return hits[0], probs


def _edit(path: Path, old: str, new: str):
    s = path.read_text(encoding="utf-8")
    assert old in s, old
    path.write_text(s.replace(old, new, 1), encoding="utf-8")


def _run_refuses(d, tmp_path, capsys, monkeypatch, *needles, failed_row_ok=False):
    """`run` exits 2 naming the problem, and the store holds no (complete) run and no result rows."""
    from eco_value.store import Store

    db = f"sqlite:///{tmp_path / 'refused.sqlite'}"
    code, _out, err = cli(["run", d / "catalog.toml", "--db", db, "--out", tmp_path / "out", "--mc-draws", "50", "--json"],
                          capsys, monkeypatch)
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    store = Store(db)
    runs = store.runs()
    if failed_row_ok:   # value checks ride along in the one compute: the refused run is recorded as failed
        assert all(r.status == "failed" for r in runs)
        for r in runs:
            assert sum(store.count_rows(r.id).values()) == 0
    else:               # structure and table checks come before anything is written
        assert runs == []
    assert not (tmp_path / "out").exists()
    return err


def test_clean_pilot_has_no_problem_and_no_warning(cat_dir):
    errors, warnings = validation_report(load_catalog(cat_dir / "catalog.toml"))
    assert errors == [] and warnings == []


def test_every_limit_has_a_value_unit_and_source():
    with open(data_dir("raster_inputs") / "validation.toml", "rb") as f:
        lim = tomllib.load(f)

    def bounds(node):
        if isinstance(node, dict):
            if "value" in node:
                yield node
            else:
                for v in node.values():
                    yield from bounds(v)

    found = list(bounds(lim))
    assert len(found) >= 12
    for b in found:
        assert set(b) >= {"value", "unit", "source"} and b["unit"] and len(b["source"]) > 20, b


# --- provisioning and tourism tables --------------------------------------------------------------


def test_negative_rice_quantity_is_refused(cat_dir, tmp_path, capsys, monkeypatch):
    _edit(cat_dir / "provisioning.csv", "rice,稻谷,agriculture,cropland,168000,", "rice,稻谷,agriculture,cropland,-168000,")
    p, probs = _only(cat_dir, "out-of-range")
    assert p.file.endswith("provisioning.csv") and p.layer == "provisioning.quantity"
    assert "-168000" in p.problem and "line 2" in p.problem and "below the minimum 0" in p.problem
    assert [q.kind for q in probs] == ["out-of-range"]
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[out-of-range]", "provisioning.quantity", "-168000")


def test_1e18_visitors_is_refused(cat_dir, tmp_path, capsys, monkeypatch):
    _edit(cat_dir / "tourism.csv", ",11500000,", ",1e18,")
    p, _ = _only(cat_dir, "out-of-range")
    assert p.file.endswith("tourism.csv") and p.layer == "tourism.visitors"
    assert "'1e18' (line 2)" in p.problem and "visitors/km2/yr" in p.problem
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "tourism.visitors")


@pytest.mark.parametrize("price", ["0", "-2700"])
def test_price_must_be_positive(cat_dir, price):
    _edit(cat_dir / "provisioning.csv", ",t,2700,", f",t,{price},")
    p, _ = _only(cat_dir, "out-of-range")
    assert p.layer == "provisioning.price_cny_per_unit" and "not above 0" in p.problem


def test_product_quantity_above_the_region_times_the_highest_yield_is_refused(cat_dir):
    # 1377 km2 x 100,000 t/km2 = 1.4e8 t is the ceiling for a product in tonnes
    _edit(cat_dir / "provisioning.csv", "vegetables,蔬菜,agriculture,cropland,520000,", "vegetables,蔬菜,agriculture,cropland,5.2e9,")
    p, _ = _only(cat_dir, "out-of-range")
    assert p.layer == "provisioning.quantity" and "t/km2/yr" in p.problem and "line 4" in p.problem


def test_unknown_land_cover_and_unit_are_named(cat_dir):
    _edit(cat_dir / "provisioning.csv", "rice,稻谷,agriculture,cropland,168000,t,", "rice,稻谷,agriculture,ricefield,168000,kg,")
    kinds = {p.kind: p for p in _problems(cat_dir)}
    assert kinds["unknown-value"].layer == "provisioning.land_cover" and "'ricefield'" in kinds["unknown-value"].problem
    assert "cropland" in kinds["unknown-value"].fix
    assert kinds["unknown-unit"].layer == "provisioning.unit" and "'kg'" in kinds["unknown-unit"].problem


def test_tourism_with_two_rows_is_refused(cat_dir):
    with open(cat_dir / "tourism.csv", "a", encoding="utf-8") as f:
        f.write("2022,9000000,300.0,True\n")
    p, _ = _only(cat_dir, "row-count")
    assert p.layer == "tourism" and "2 rows" in p.problem


# --- malformed table files --------------------------------------------------------------------------


def _bad_number(d):
    _edit(d / "provisioning.csv", ",168000,", ",16x000,")


def _missing_column(d):
    _edit(d / "provisioning.csv", "price_cny_per_unit", "price")


def _semicolons(d):
    p = d / "provisioning.csv"
    p.write_text(p.read_text(encoding="utf-8").replace(",", ";"), encoding="utf-8")


def _gbk(d):
    p = d / "provisioning.csv"
    p.write_bytes(p.read_text(encoding="utf-8").encode("gbk"))


def _folder(d):
    (d / "provisioning.csv").unlink()
    (d / "provisioning.csv").mkdir()


@pytest.mark.parametrize("breakage, kind, field, words", [
    (_bad_number, "bad-value", "provisioning.quantity", ["'16x000'", "line 2"]),
    (_missing_column, "missing-column", "provisioning.price_cny_per_unit", ["price_cny_per_unit", "'price'"]),
    (_semicolons, "bad-delimiter", "provisioning", ["';'"]),
    (_gbk, "bad-encoding", "provisioning", ["UTF-8", "line 2"]),
    (_folder, "not-a-file", "provisioning", ["folder"]),
], ids=["bad-number", "missing-column", "semicolons", "gbk", "folder"])
def test_malformed_provisioning_csv(cat_dir, tmp_path, capsys, monkeypatch, breakage, kind, field, words):
    breakage(cat_dir)
    p, _ = _only(cat_dir, kind)
    assert p.file.endswith("provisioning.csv") and p.layer == field and p.fix
    for w in words:
        assert w in p.problem, (w, p.problem)
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, f"[{kind}]", "provisioning.csv")


# --- catalog and vector inputs that validated but crashed the run ------------------------------------


def test_empty_parcel_layer(cat_dir, tmp_path, capsys, monkeypatch):
    g = gpd.read_file(cat_dir / "parcels.gpkg", layer="parcels")
    (cat_dir / "parcels.gpkg").unlink()
    g.iloc[:0].to_file(cat_dir / "parcels.gpkg", layer="parcels", driver="GPKG")
    p, _ = _only(cat_dir, "empty-layer")
    assert p.layer == "parcels" and p.file.endswith("parcels.gpkg") and "no features" in p.problem
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[empty-layer]", "parcels.gpkg")


@pytest.mark.parametrize("years", ["2023,\n    2023,", "2023,\n    2020,"], ids=["zero", "reversed"])
def test_zero_or_reversed_period(cat_dir, tmp_path, capsys, monkeypatch, years):
    _edit(cat_dir / "catalog.toml", "2020,\n    2023,", years)
    p, _ = _only(cat_dir, "bad-period")
    assert p.layer == "catalog.period" and p.file.endswith("catalog.toml") and "2023" in p.problem
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[bad-period]")


def test_reference_layer_that_is_not_a_layer(cat_dir, tmp_path, capsys, monkeypatch):
    _edit(cat_dir / "catalog.toml", 'reference_layer = "land_cover@t1"', 'reference_layer = "land_cover@t3"')
    p, _ = _only(cat_dir, "bad-reference-layer")
    assert p.layer == "catalog.reference_layer" and "'land_cover@t3'" in p.problem and "land_cover@t1" in p.fix
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[bad-reference-layer]")


@pytest.mark.parametrize("band", [2, 0])
def test_band_that_the_file_does_not_have(cat_dir, tmp_path, capsys, monkeypatch, band):
    _edit(cat_dir / "catalog.toml", 'path = "precip.tif"', f'path = "precip.tif"\nband = {band}')
    p, _ = _only(cat_dir, "missing-band")
    assert p.layer == "precip" and p.file.endswith("precip.tif") and f"band {band}" in p.problem and "1 band" in p.problem
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[missing-band]", "precip.tif")


def test_declared_band_is_the_band_checked(cat_dir):
    """A two-band file: band 1 has gaps, band 2 is whole; the catalog's `band` decides which is checked."""
    path = cat_dir / "precip.tif"
    with rasterio.open(path) as src:
        a = src.read(1)
        prof = src.profile
    gappy = a.copy()
    gappy.ravel()[np.flatnonzero(a != src.nodata)[::2]] = np.nan
    path.unlink()
    prof.update(driver="GTiff", count=2)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(gappy, 1)
        dst.write(a, 2)
    assert [p.kind for p in _problems(cat_dir)] == ["nodata-inside-region"]
    _edit(cat_dir / "catalog.toml", 'path = "precip.tif"', 'path = "precip.tif"\nband = 2')
    assert _problems(cat_dir) == []


def test_raster_path_that_is_a_folder(cat_dir):
    (cat_dir / "fvc.tif").unlink()
    (cat_dir / "fvc.tif").mkdir()
    p, _ = _only(cat_dir, "not-a-file")
    assert p.layer == "fvc" and "folder" in p.problem


# --- nodata-like pixels inside the region -------------------------------------------------------------


def _poke(path: Path, n: int | None, value, share: float | None = None) -> tuple[int, int]:
    """Set ``value`` on the first ``n`` (or ``share`` of the) in-region pixels; return (set, region px)."""
    with rasterio.open(path) as src:
        a = src.read(1)
        prof = src.profile
        nod = src.nodata
    inside = np.flatnonzero(a != nod)
    k = n if n is not None else int(len(inside) * share)
    a.ravel()[inside[:k]] = value
    path.unlink()
    prof.update(driver="GTiff")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(a, 1)
    return k, len(inside)


def test_nan_in_18_percent_of_precipitation_is_refused(cat_dir, tmp_path, capsys, monkeypatch):
    k, n_in = _poke(cat_dir / "precip.tif", None, np.nan, share=0.18)
    p, probs = _only(cat_dir, "nodata-inside-region")
    assert p.layer == "precip" and p.file.endswith("precip.tif")
    assert f"{k:,} of the region's {n_in:,} pixels" in p.problem and f"{k:,} NaN" in p.problem
    assert "0.001" in p.fix and "validation.toml" in p.fix
    assert [q.kind for q in probs] == ["nodata-inside-region"]
    _run_refuses(cat_dir, tmp_path, capsys, monkeypatch, "[nodata-inside-region]", "precip.tif", failed_row_ok=True)


@pytest.mark.parametrize("layer, value, what", [
    ("aet", np.inf, "±inf"),
    ("dem", -9999.0, "the declared nodata -9999"),
    ("fvc", -3.4028234663852886e38, "fill code"),
    ("land_cover@t2", 255, "the declared nodata 255"),
], ids=["inf", "declared", "float32-fill", "class-layer"])
def test_every_kind_of_nodata_is_counted(cat_dir, layer, value, what):
    files = {"land_cover@t2": "lulc_2023"}   # the pilot's file of that layer
    k, _ = _poke(cat_dir / f"{files.get(layer, layer)}.tif", 200, value)
    p, probs = _only(cat_dir, "nodata-inside-region")
    assert p.layer == layer and f"{k:,} {what}" in p.problem, p.problem
    assert not [q for q in probs if q.kind == "out-of-range"]   # a fill value is a gap, not a wild value


def test_a_few_gaps_are_a_warning_not_a_refusal(cat_dir, capsys, monkeypatch):
    _poke(cat_dir / "precip.tif", 3, np.nan)
    errors, warnings = validation_report(load_catalog(cat_dir / "catalog.toml"))
    assert errors == []
    assert [(w.kind, w.layer) for w in warnings] == [("nodata-inside-region", "precip")]
    assert "3 NaN" in warnings[0].problem
    code, out, err = cli(["validate", cat_dir], capsys, monkeypatch)
    assert code == 0 and "warning" in err and "[nodata-inside-region]" in err and "ok" in out


# --- problems printed by the CLI keep their brackets ----------------------------------------------------


def test_cli_prints_bracketed_kinds_and_fixes(cat_dir, capsys, monkeypatch):
    _edit(cat_dir / "catalog.toml", "[layers.aet]", "[unused.aet]")
    # an unknown top-level table is itself a catalog error; drop it to get the missing-layer problem only
    s = (cat_dir / "catalog.toml").read_text(encoding="utf-8")
    head, _, tail = s.partition("[unused.aet]")
    tail = tail[tail.index("\n[") + 1:] if "\n[" in tail else ""
    (cat_dir / "catalog.toml").write_text(head + tail, encoding="utf-8")
    code, _out, err = cli(["validate", cat_dir], capsys, monkeypatch)
    assert code == 2
    assert "[missing-layer]" in err and "add a [layers.aet] entry" in err
    code, _out, err = cli(["run", cat_dir, "--db", f"sqlite:///{cat_dir / 'x.sqlite'}"], capsys, monkeypatch)
    assert code == 2 and "[missing-layer]" in err and "add a [layers.aet] entry" in err
