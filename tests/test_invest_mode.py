"""InVEST-compatible carbon-stock mode: the same numbers and maps as InVEST 3.20 Carbon, by hand."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eco_value.carbon.invest import valuation_constant
from eco_value.invest_mode import Valuation, carbon_stock, carbon_stock_maps
from eco_value.errors import InputError


def _tif(path, arr, crs="EPSG:32648", res=30.0, nodata=255):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                       crs=crs, transform=Affine(res, 0, 300000, 0, -res, 3400000), nodata=nodata) as d:
        d.write(arr, 1)
    return path


@pytest.fixture
def pools(tmp_path):
    p = tmp_path / "pools.csv"
    p.write_text("lucode,c_above,c_below,c_soil,c_dead\n1,5,1,60,0\n2,100,25,88,13\n4,6,3,88,0\n", encoding="utf-8")
    return p


def test_stock_and_sequestration_known_answer(tmp_path, pools):
    cur = np.array([[1, 2, 2], [4, 255, 2], [7, 1, 1]], dtype="uint8")
    fut = np.array([[2, 2, 2], [4, 255, 2], [7, 2, 1]], dtype="uint8")
    a = _tif(tmp_path / "cur.tif", cur)
    b = _tif(tmp_path / "fut.tif", fut)
    r = carbon_stock(a, pools, b)
    ha = 30 * 30 / 10_000
    # class totals (Mg C/ha): 1 -> 66, 2 -> 226, 4 -> 97; code 7 not in table; 255 nodata
    assert r.total_stock_mgc == pytest.approx((3 * 66 + 3 * 226 + 97) * ha, rel=1e-12)
    assert r.future_stock_mgc == pytest.approx((1 * 66 + 5 * 226 + 97) * ha, rel=1e-12)
    assert r.sequestration_mgc == pytest.approx(2 * (226 - 66) * ha, rel=1e-12)
    assert r.nodata_px == 2
    assert r.missing_codes == {7: 2}


def test_geographic_crs_is_refused(tmp_path, pools):
    a = _tif(tmp_path / "geo.tif", np.ones((2, 2), dtype="uint8"), crs="EPSG:4326", res=0.001)
    with pytest.raises(InputError, match="projected"):
        carbon_stock(a, pools)


def test_cli_json_output(tmp_path, pools):
    a = _tif(tmp_path / "cur.tif", np.full((4, 5), 2, dtype="uint8"))
    out = subprocess.run([sys.executable, "-m", "eco_value.cli", "carbon-stock", "--lulc", str(a), "--pools", str(pools), "--json"],
                         capture_output=True, text=True, check=True)
    j = json.loads(out.stdout)
    assert j["total_stock_mgc"] == pytest.approx(20 * 226 * 0.09)
    assert j["sequestration_mgc"] is None


def test_pool_table_missing_columns(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("lucode,c_above\n1,2\n", encoding="utf-8")
    a = _tif(tmp_path / "cur.tif", np.ones((2, 2), dtype="uint8"))
    with pytest.raises(InputError, match="c_below"):
        carbon_stock(a, p)


# ---- maps (--out): InVEST 3.20's published model, computed here by hand in numpy ----------------------

POOLS = {1: (5.0, 1.0, 60.0, 0.0), 2: (100.5, 25.25, 88.0, 13.0), 4: (6.0, 3.0, 88.0, 0.0), 9: (0.0, 0.0, 70.4, 2.5)}


def _pools_csv(path):
    # InVEST matches column names without case and ignores extra columns
    rows = ["LULC_name,lucode,C_above,c_below,c_soil,c_dead"] + [f"class {c},{c},{a},{b},{s},{d}" for c, (a, b, s, d) in POOLS.items()]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _npv_constant_by_hand(price, discount_pct, change_pct, y0, y1):
    """InVEST user's guide: NPV = V/n * sum_{t=0}^{n-1} 1 / ((1 + r/100)^t (1 + c/100)^t) per t C of change."""
    n = y1 - y0
    return price / n * sum(1 / ((1 + discount_pct / 100) ** t * (1 + change_pct / 100) ** t) for t in range(n))


def _maps_by_hand(cur, fut, nodata, k):
    def storage(a, pool=None):
        out = np.full(a.shape, -1.0)
        for c, p in POOLS.items():
            out[a == c] = sum(p) if pool is None else p[pool]
        out[a == nodata] = -1.0
        return out
    sb, sa = storage(cur), storage(fut)
    ok = (sb != -1) & (sa != -1)
    chg = np.where(ok, sa - sb, -1.0)
    npv = np.where(chg != -1, chg * k, float(np.finfo(np.float32).max))
    maps = {"c_storage_bas": sb, "c_storage_alt": sa, "c_change_bas_alt": chg, "npv_alt": npv}
    for i, pool in enumerate(("c_above", "c_below", "c_soil", "c_dead")):
        maps[f"intermediate_outputs/{pool}_bas"] = storage(cur, i)
        maps[f"intermediate_outputs/{pool}_alt"] = storage(fut, i)
    return maps


def _landscape(dtype, nodata, unknown):
    rng = np.random.default_rng(7)
    codes = np.array(list(POOLS), dtype=dtype)
    cur = codes[rng.integers(0, len(codes), (50, 40))]
    fut = np.where(rng.random((50, 40)) < 0.3, codes[rng.integers(0, len(codes), (50, 40))], cur).astype(dtype)
    cur[0, :5] = nodata
    fut[0, 3:8] = nodata             # overlapping and non-overlapping nodata
    cur[10, 10] = unknown            # a code missing from the pool table
    fut[20, 20] = unknown
    return cur, fut


@pytest.mark.parametrize("dtype,nodata,unknown", [("uint8", 255, 7), ("int16", -9999, 300), ("int32", -1, 1_000_000)])
def test_maps_equal_invest_formula(tmp_path, dtype, nodata, unknown):
    cur, fut = _landscape(dtype, nodata, unknown)
    a = _tif(tmp_path / "cur.tif", cur, nodata=nodata)
    b = _tif(tmp_path / "fut.tif", fut, nodata=nodata)
    out = tmp_path / "out"
    val = Valuation(price_per_t_c=43.0, discount_rate_pct=-7.1, rate_change_pct=2.8, bas_year=2016, alt_year=2030)
    r = carbon_stock_maps(a, _pools_csv(tmp_path / "pools.csv"), out, b, valuation=val, intermediate=True)
    k = _npv_constant_by_hand(43.0, -7.1, 2.8, 2016, 2030)
    expected = _maps_by_hand(cur, fut, nodata, k)
    assert set(r.maps) == {Path(n).name for n in expected}
    for name, want in expected.items():
        with rasterio.open(out / f"{name}.tif") as ds:
            got = ds.read(1)
            nd = ds.nodata
            assert ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 32648
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", name
            assert ds.profile["tiled"]
        want_nd = float(np.finfo(np.float32).max) if name == "npv_alt" else -1.0
        assert nd == want_nd, name
        mask = want == want_nd
        np.testing.assert_array_equal(got == nd, mask, err_msg=name)
        np.testing.assert_allclose(got[~mask], want[~mask], rtol=1e-6, err_msg=name)
    # the unknown code is reported, and nodata in every map
    assert r.missing_codes == {unknown: 2}
    assert r.nodata_px == 10
    # raster_values_summary.csv: InVEST's labels, units and totals (sum of valid values x pixel area in ha)
    ha = 30 * 30 / 10_000
    with open(out / "raster_values_summary.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Raster", "Total", "Units", "Filename"]
    labels = {"c_storage_bas": ("Baseline Carbon Storage", "metric_ton"), "c_storage_alt": ("Alternate Carbon Storage", "metric_ton"),
              "c_change_bas_alt": ("Change in Carbon Storage", "metric_ton"), "npv_alt": ("Net Present Value of Carbon Change", "currency")}
    assert [r_[0] for r_ in rows[1:]] == [v[0] for v in labels.values()]
    for row, (name, (label, units)) in zip(rows[1:], labels.items()):
        want = expected[name]
        nd = float(np.finfo(np.float32).max) if name == "npv_alt" else -1.0
        assert row[2] == units and row[3] == f"{name}.tif"
        assert float(row[1]) == pytest.approx(want[want != nd].sum() * ha, rel=1e-6)
    assert r.total_stock_mgc == pytest.approx(expected["c_storage_bas"][expected["c_storage_bas"] != -1].sum() * ha, rel=1e-6)   # float32 maps, as InVEST
    assert r.npv == pytest.approx(float(rows[4][1]), rel=1e-12)
    # the totals without maps (histograms) are the same numbers
    fast = carbon_stock(a, tmp_path / "pools.csv", b)
    assert fast.total_stock_mgc == pytest.approx(r.total_stock_mgc, rel=1e-12)
    assert fast.future_stock_mgc == pytest.approx(r.future_stock_mgc, rel=1e-12)
    assert fast.missing_codes == r.missing_codes and fast.nodata_px == r.nodata_px
    assert not list(out.rglob(".*"))                     # no temporary file left


def test_valuation_constant_matches_invest_test_value():
    # natcap.invest tests/test_carbon.py: "Valuation constant based on provided args is 59.00136"
    assert valuation_constant(2016, 2030, -7.1, 2.8, 43.0) == pytest.approx(59.00136, abs=1e-5)
    assert valuation_constant(2016, 2030, 0.0, 0.0, 43.0) == pytest.approx(43.0, rel=1e-12)   # ratio 1: the price
    assert valuation_constant(2000, 2010, 5.0, 1.0, 10.0) == pytest.approx(_npv_constant_by_hand(10.0, 5.0, 1.0, 2000, 2010), rel=1e-12)


def test_change_of_minus_one_reads_as_nodata_as_in_invest(tmp_path):
    # class 1 -> class 2 loses exactly 1 t C/ha: InVEST's change map holds -1 there (= its nodata), so no NPV
    (tmp_path / "p.csv").write_text("lucode,c_above,c_below,c_soil,c_dead\n1,10,0,0,0\n2,9,0,0,0\n", encoding="utf-8")
    a = _tif(tmp_path / "a.tif", np.array([[1, 1]], dtype="uint8"))
    b = _tif(tmp_path / "b.tif", np.array([[2, 1]], dtype="uint8"))
    carbon_stock_maps(a, tmp_path / "p.csv", tmp_path / "o", b, valuation=Valuation(10.0, 0.0, 0.0, 2000, 2010))
    with rasterio.open(tmp_path / "o" / "npv_alt.tif") as ds:
        assert ds.read(1).tolist() == [[ds.nodata, 0.0]]


def test_cli_writes_maps_with_valuation(tmp_path, pools):
    cur = np.array([[1, 2], [4, 255]], dtype="uint8")
    a = _tif(tmp_path / "cur.tif", cur)
    b = _tif(tmp_path / "fut.tif", np.array([[2, 2], [4, 255]], dtype="uint8"))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "eco_value.cli", "carbon-stock", "--lulc", str(a), "--pools", str(pools),
                        "--future-lulc", str(b), "--out", str(out), "--price", "43", "--discount-rate", "0",
                        "--rate-change", "0", "--lulc-year", "2016", "--future-year", "2030", "--json"],
                       capture_output=True, text=True, check=True)
    j = json.loads(p.stdout)
    assert sorted(j["maps"]) == ["c_change_bas_alt", "c_storage_alt", "c_storage_bas", "npv_alt"]
    assert j["npv"] == pytest.approx((226 - 66) * 43 * 0.09)
    with rasterio.open(out / "npv_alt.tif") as ds:
        assert ds.read(1)[0, 0] == pytest.approx((226 - 66) * 43)


@pytest.mark.parametrize("extra,message", [
    (["--price", "43", "--out", "o"], "missing --discount-rate, --rate-change, --lulc-year, --future-year"),
    (["--price", "43"], "--price needs --out"),
    (["--intermediate"], "need --out"),
])
def test_cli_refuses_incomplete_options(tmp_path, pools, extra, message):
    a = _tif(tmp_path / "cur.tif", np.ones((2, 2), dtype="uint8"))
    p = subprocess.run([sys.executable, "-m", "eco_value.cli", "carbon-stock", "--lulc", str(a), "--pools", str(pools), *extra],
                       capture_output=True, text=True)
    assert p.returncode == 2 and message in " ".join((p.stderr + p.stdout).split())


def test_valuation_years_and_grid_are_checked_before_writing(tmp_path, pools):
    a = _tif(tmp_path / "cur.tif", np.ones((4, 4), dtype="uint8"))
    b = _tif(tmp_path / "fut.tif", np.ones((4, 5), dtype="uint8"))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="grid") as e:
        carbon_stock_maps(a, pools, out, b)
    assert "4x4 vs 5x4" in str(e.value)
    with pytest.raises(InputError, match="must be after"):
        carbon_stock_maps(a, pools, out, a, valuation=Valuation(43.0, 1.0, 0.0, 2030, 2030))
    assert not out.exists() or not any(out.rglob("*"))


def test_pool_table_non_numbers_are_named(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("lucode,c_above,c_below,c_soil,c_dead\n1,2,x,0,0\n2,1,1,,0\n", encoding="utf-8")
    a = _tif(tmp_path / "cur.tif", np.ones((2, 2), dtype="uint8"))
    with pytest.raises(InputError) as e:
        carbon_stock(a, p)
    msg = str(e.value)
    assert "c_below" in msg and "line 2: 'x'" in msg and "c_soil" in msg and "line 3: ''" in msg


def test_more_classes_than_a_byte_holds(tmp_path):
    # 300 classes: slots need 16 bits and class pairs 17 bits; class c holds c t C/ha above ground
    rows = ["lucode,c_above,c_below,c_soil,c_dead"] + [f"{c},{c},0,0,0.5" for c in range(300)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cur = np.arange(300, dtype="int16").reshape(15, 20)
    fut = cur[::-1, ::-1].copy()
    a = _tif(tmp_path / "a.tif", cur, nodata=-1)
    b = _tif(tmp_path / "b.tif", fut, nodata=-1)
    r = carbon_stock_maps(a, tmp_path / "p.csv", tmp_path / "o", b)
    with rasterio.open(tmp_path / "o" / "c_change_bas_alt.tif") as ds:
        got = ds.read(1)
    want = (fut + 0.5) - (cur + 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert r.total_stock_mgc == pytest.approx((np.arange(300) + 0.5).sum() * 0.09, rel=1e-9)


def test_a_failure_mid_run_leaves_no_file(tmp_path, pools, monkeypatch):
    """A chunk failing after others were appended to the streamed COGs: every partial file is removed."""
    import eco_value.invest_mode as im

    a = _tif(tmp_path / "cur.tif", np.ones((1100, 600), dtype="uint8"))       # 3 chunks (one tile row each)
    calls = []
    real = im.carbon_block

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(*args, **kw)

    monkeypatch.setattr(im, "carbon_block", flaky)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        carbon_stock_maps(a, pools, out, a, intermediate=True, threads=1)
    assert not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6), (1, 7, 3)])       # odd and even numbers of pixels
@pytest.mark.parametrize("n_classes", [3, 300])                           # uint8 slots (pixel pairs) and uint16 slots
def test_kernel_maps_are_table_lookups_of_the_slots_whatever_the_block_shape(shape, n_classes):
    """carbon_block takes two pixels at a time from pixel-pair tables when the slots are bytes and the
    block has an even number of pixels; every map must still be its table at each pixel's slot(s)."""
    from eco_value.carbon.invest import PoolTable, Scratch, build_lookup, carbon_block, slot_tables

    rng = np.random.default_rng(5)
    codes = np.arange(n_classes, dtype=np.int64) * 3
    table = PoolTable(codes, rng.integers(0, 400, (n_classes, 4)) / 4.0)
    cur = rng.choice(np.append(codes, [-9, 11]), size=shape).astype(np.int32)         # nodata and a missing code
    fut = rng.choice(np.append(codes, [-9, 11]), size=shape).astype(np.int32)
    cur.flat[0], fut.flat[-1] = 11, -9
    lk = build_lookup(table, np.int32, -9)
    tables = slot_tables(table, 12.5)
    assert (tables.pair_total is None) == (n_classes + 2 > 256)
    sb, sa = lk.slots(cur).astype(np.intp), lk.slots(fut).astype(np.intp)
    for scratch in (None, Scratch()):
        maps, counts = carbon_block(cur, lk, tables, fut, lk, intermediate=True, scratch=scratch)
        np.testing.assert_array_equal(maps["c_storage_bas"], tables.total[sb])
        np.testing.assert_array_equal(maps["c_storage_alt"], tables.total[sa])
        for k, pool in enumerate(("c_above", "c_below", "c_soil", "c_dead")):
            np.testing.assert_array_equal(maps[f"{pool}_bas"], tables.pools[k][sb])
            np.testing.assert_array_equal(maps[f"{pool}_alt"], tables.pools[k][sa])
        np.testing.assert_array_equal(maps["npv_alt"], tables.npv[sb, sa])
        assert counts.missing == {11: int((cur == 11).sum() + (fut == 11).sum())}
        assert counts.nodata_px == int((cur == -9).sum() + (fut == -9).sum())


def test_maps_of_several_tiles_and_edge_tiles_equal_the_formula(tmp_path):
    """A map wider and taller than a tile: each chunk is computed as whole tiles plus an edge tile (tile-
    major groups; the corner one, 19 × 5 px, has an odd number of pixels: no pixel pairs) and the totals
    are summed over the groups; maps and totals still equal the formula."""
    rng = np.random.default_rng(11)
    codes = np.array(list(POOLS) + [255, 7], dtype="uint8")                  # with nodata and a missing code
    cur = codes[rng.integers(0, len(codes), (531, 1029))]
    fut = np.where(rng.random(cur.shape) < 0.2, codes[rng.integers(0, len(codes), cur.shape)], cur).astype("uint8")
    a, b = _tif(tmp_path / "cur.tif", cur), _tif(tmp_path / "fut.tif", fut)
    val = Valuation(price_per_t_c=43.0, discount_rate_pct=7.0, rate_change_pct=2.8, bas_year=2016, alt_year=2030)
    r = carbon_stock_maps(a, _pools_csv(tmp_path / "pools.csv"), tmp_path / "out", b, valuation=val, intermediate=True,
                          threads=2)
    expected = _maps_by_hand(cur, fut, 255, _npv_constant_by_hand(43.0, 7.0, 2.8, 2016, 2030))
    for name, want in expected.items():
        with rasterio.open(tmp_path / "out" / f"{name}.tif") as ds:
            got = ds.read(1)
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and ds.block_shapes == [(512, 512)]
        mask = want == (float(np.finfo(np.float32).max) if name == "npv_alt" else -1.0)
        np.testing.assert_array_equal(got == ds.nodata, mask, err_msg=name)
        np.testing.assert_allclose(got[~mask], want[~mask], rtol=1e-6, err_msg=name)
    assert r.missing_codes == {7: int((cur == 7).sum() + (fut == 7).sum())}
    assert r.nodata_px == int((cur == 255).sum() + (fut == 255).sum())
    want_total = expected["c_storage_bas"][expected["c_storage_bas"] != -1].sum() * 0.09
    assert r.total_stock_mgc == pytest.approx(want_total, rel=1e-6)
    assert carbon_stock(a, tmp_path / "pools.csv", b).sequestration_mgc == pytest.approx(r.sequestration_mgc, rel=1e-9)
