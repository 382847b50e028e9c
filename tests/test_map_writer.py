"""The run's map files written window by window (outputs/maps.py): one open dataset per map for the
whole pass on local threads (not one open per chunk), closed before the COG conversion."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
from affine import Affine

from eco_value.grid import Grid
from eco_value.outputs.maps import WindowWriter


def _empty_map(path, h, w):
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:32648",
                       transform=Affine(10, 0, 0, 0, -10, h * 10), nodata=-9999.0, tiled=True, blockxsize=16,
                       blockysize=16):
        pass


@pytest.fixture
def opens(monkeypatch):
    """Every rasterio.open call from now on (the datasets still open as usual)."""
    calls = []
    real_open = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda *a, **k: calls.append(a) or real_open(*a, **k))
    return calls


def test_one_open_per_map_for_the_pass_and_complete_after_close(tmp_path, opens):
    path = tmp_path / "m.tif"
    _empty_map(path, 32, 48)
    opens.clear()
    w = WindowWriter(str(path), threading.Lock(), keep_open=True)
    full = np.arange(32 * 48, dtype=np.float32).reshape(32, 48)
    full[3, 5] = np.nan
    for r0 in (0, 16):
        for c0 in (0, 16, 32):
            w(full[r0:r0 + 16, c0:c0 + 16], r0, c0)
    w.close()
    w.close()   # twice: no error
    assert len(opens) == 1                      # 6 windows, one open
    with rasterio.open(path) as src:
        got = src.read(1)
    expected = np.where(np.isnan(full), -9999.0, full)
    assert np.array_equal(got, expected)        # NaN → the file's nodata, every window in place


def test_a_writer_not_kept_open_opens_per_window(tmp_path, opens):
    path = tmp_path / "m.tif"
    _empty_map(path, 16, 32)
    opens.clear()
    w = WindowWriter(str(path), threading.Lock())   # e.g. a dask.distributed cluster: processes share no handle
    w(np.ones((16, 16), np.float32), 0, 0)
    w(np.full((16, 16), 2, np.float32), 0, 16)
    w.close()
    assert len(opens) == 2
    with rasterio.open(path) as src:
        assert src.read(1)[0].tolist() == [1.0] * 16 + [2.0] * 16


def test_create_map_files_keeps_local_writers_open(tmp_path):
    from eco_value.outputs.maps import create_map_files
    from eco_value.rules import load_rules

    grid = Grid("EPSG:32648", Affine(10, 0, 0, 0, -10, 160), 16, 16, chunk_px=16)
    files = create_map_files({"gep_cny_per_km2": None}, tmp_path, grid, "r", load_rules("cn2011-mee2020"), None)
    _arr, writer = files["gep_cny_per_km2"]
    assert writer.keep_open
    writer(np.full((16, 16), 5.0), 0, 0)
    writer.close()
    with rasterio.open(tmp_path / "gep_cny_per_km2.tif") as src:
        assert float(src.read(1).sum()) == 5.0 * 256
