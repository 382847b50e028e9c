"""COGs written in one streamed pass (outputs/cog_stream.py) are what GDAL's COG driver writes: same
pixels, grid, nodata and tags, GDAL reads ``LAYOUT=COG``, the IFD precedes the tiles, tiles are in
row-major order with the leader and trailer the ghost area announces."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from eco_value.outputs import cog_stream
from eco_value.outputs.cog_stream import Codec, CogStream, cog_header, encode_tiles

TRANSFORM = Affine(30.0, 0, 300000, 0, -30.0, 3400000)
CRS = "EPSG:32648"
TAGS = {"layer": "c_storage_bas", "units": "t C/ha"}


def _stream(path, a, codec, nodata=-1.0, chunk_tiles=2):
    h, w = a.shape
    bs = codec.blocksize
    header, n = cog_header(w, h, transform=TRANSFORM, crs=CRS, nodata=nodata, dtype="float32", tags=TAGS, codec=codec)
    s = CogStream(path, header, n)
    for r in range(0, h, bs):
        for c in range(0, w, bs * chunk_tiles):
            win = Window(c, r, min(bs * chunk_tiles, w - c), min(bs, h - r))
            block = a[r:r + win.height, c:c + win.width]
            s.append(encode_tiles([block, block * 2], codec, window_transform(win, TRANSFORM))[0])
    s.close()
    return path


def _gdal_cog(path, a, codec, nodata=-1.0):
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype="float32", crs=CRS,
                      transform=TRANSFORM, nodata=nodata) as d:
            d.write(a, 1)
            d.update_tags(**TAGS)
        rio_copy(mem.name, path, driver="COG", overviews="NONE", **codec.cog_options())
    return path


def _check_layout(path):
    """IFD before the data, tiles in increasing order, leader = size, trailer = last 4 bytes repeated."""
    buf = path.read_bytes()
    offs_a, cnts_a, nxt = cog_stream._ifd_arrays(buf)
    offs, cnts = cog_stream._values(buf, offs_a), cog_stream._values(buf, cnts_a)
    assert nxt == 0
    assert max(offs_a.pos, cnts_a.pos) < offs.min()
    assert (np.diff(offs) > 0).all()
    for o, c in zip(offs.tolist(), cnts.tolist()):
        assert struct.unpack_from("<I", buf, o - 4)[0] == c
        assert buf[o + c:o + c + 4] == buf[o + c - 4:o + c]
    assert offs[-1] + cnts[-1] + 4 == len(buf)


@pytest.mark.parametrize("shape", [(700, 1300), (256, 256), (10, 7), (513, 257)])
def test_streamed_cog_equals_gdal_cog(tmp_path, shape):
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([-1.0, 66.0, 226.25, 97.5], dtype=np.float32), size=shape)
    codec = Codec(blocksize=256)
    mine = _stream(tmp_path / "s.tif", a, codec)
    ref = _gdal_cog(tmp_path / "g.tif", a, codec)
    with rasterio.open(mine) as m, rasterio.open(ref) as g:
        assert m.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert m.tags(ns="IMAGE_STRUCTURE") == g.tags(ns="IMAGE_STRUCTURE")
        assert m.profile == g.profile
        assert m.tags() == g.tags()
        np.testing.assert_array_equal(m.read(1), a)
        np.testing.assert_array_equal(m.read(1, window=Window(3, 5, 9, 4)), a[5:9, 3:12])
    _check_layout(mine)


def test_bigtiff_header(tmp_path, monkeypatch):
    monkeypatch.setattr(cog_stream, "_BIGTIFF_ABOVE", 0)       # as for a map above 4 GiB
    a = np.arange(300 * 200, dtype=np.float32).reshape(300, 200)
    p = _stream(tmp_path / "big.tif", a, Codec(blocksize=128))
    assert p.read_bytes()[2] == 43
    with rasterio.open(p) as d:
        assert d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(d.read(1), a)
        assert d.nodata == -1.0 and d.transform == TRANSFORM and d.tags()["layer"] == "c_storage_bas"
    _check_layout(p)


def test_an_unfinished_stream_refuses_to_close_and_aborts_cleanly(tmp_path):
    codec = Codec(blocksize=256)
    header, n = cog_header(600, 600, transform=TRANSFORM, crs=CRS, nodata=-1.0, dtype="float32", tags=TAGS, codec=codec)
    s = CogStream(tmp_path / "x.tif", header, n)
    s.append(encode_tiles([np.zeros((256, 600), np.float32)], codec, TRANSFORM)[0])
    with pytest.raises(ValueError, match="3 of 9 tiles"):
        s.close()
    s.abort()
    assert not (tmp_path / "x.tif").exists()


def test_mapset_with_overviews(tmp_path):
    """``--overviews``: the streamed COG gets GDAL's overviews in a second pass and stays a COG."""
    from eco_value.outputs.invest_maps import MapSet

    a = np.random.default_rng(1).choice(np.array([1.5, 66.0, 226.25], dtype=np.float32), size=(700, 1100))
    ms = MapSet(tmp_path, {"c_storage_bas": -1.0}, width=1100, height=700, transform=TRANSFORM, crs=CRS, threads=2)
    for win in ms.windows(1024):
        block = a[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width]
        ms.append(ms.encode(win, {"c_storage_bas": block}))
    paths = ms.finish(threads=2, overviews=True)
    with rasterio.open(paths["c_storage_bas"]) as d:
        assert d.overviews(1)[0] == 2
        assert d.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(d.read(1), a)
        assert d.tags()["units"] == "t C/ha"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c_storage_bas.tif"]      # no part file left


@pytest.mark.parametrize("size", [(700, 1300), (40000, 40000)])       # classic TIFF and BigTIFF
def test_retagged_header_equals_gdals_header_for_the_other_layer(size):
    kw = dict(transform=TRANSFORM, crs=CRS, nodata=-1.0, dtype="float32", codec=Codec())
    h, n = cog_header(*size, tags={**TAGS, "source": "eco-value"}, **kw)
    other, n2 = cog_header(*size, tags={**TAGS, "layer": "c_above_alt", "source": "eco-value"}, **kw)
    assert n == n2 and h != other
    assert cog_stream.retagged_header(h, {"layer": "c_storage_bas"}, {"layer": "c_above_alt"}) == other
    assert cog_stream.retagged_header(h, {"layer": "nope"}, {"layer": "c_above_alt"}) is None
    assert cog_stream.retagged_header(h, {"layer": "c_storage_bas"}, {"layer": "a<b"}) is None
