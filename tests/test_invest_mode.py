"""InVEST-compatible carbon-stock mode: the same numbers as InVEST's table lookup, by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine

from eco_value.carbon.invest import carbon_stock
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
