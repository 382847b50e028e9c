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
from eco_value.outputs.cog_stream import Codec, CogStream, cog_header, encode_tiles, tile_major, zstd_tiles

TRANSFORM = Affine(30.0, 0, 300000, 0, -30.0, 3400000)
CRS = "EPSG:32648"
TAGS = {"layer": "c_storage_bas", "units": "t C/ha"}


def _gdal_tiles(block, codec, transform):
    return encode_tiles([block, block * 2], codec, transform)[0]


def _zstd_tiles(block, codec, transform):
    """Whole tiles compressed in place (tile-major groups), the edge tile padded by a copy."""
    return [t for g in tile_major(block, codec.blocksize) for t in zstd_tiles(list(g), codec)]


def _stream(path, a, codec, nodata=-1.0, chunk_tiles=2, encoder=_gdal_tiles):
    h, w = a.shape
    bs = codec.blocksize
    header, n = cog_header(w, h, transform=TRANSFORM, crs=CRS, nodata=nodata, dtype=a.dtype.newbyteorder("=").name,
                           tags=TAGS, codec=codec)
    s = CogStream(path, header, n)
    for r in range(0, h, bs):
        for c in range(0, w, bs * chunk_tiles):
            win = Window(c, r, min(bs * chunk_tiles, w - c), min(bs, h - r))
            block = a[r:r + win.height, c:c + win.width]
            s.append(encoder(block, codec, window_transform(win, TRANSFORM)))
    s.close()
    return path


def _gdal_cog(path, a, codec, nodata=-1.0):
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype=a.dtype.name, crs=CRS,
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


@pytest.mark.parametrize("encoder", [_gdal_tiles, _zstd_tiles])
@pytest.mark.parametrize("shape", [(700, 1300), (256, 256), (10, 7), (513, 257)])
def test_streamed_cog_equals_gdal_cog(tmp_path, shape, encoder):
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([-1.0, 66.0, 226.25, 97.5], dtype=np.float32), size=shape)
    codec = Codec(blocksize=256)
    mine = _stream(tmp_path / "s.tif", a, codec, encoder=encoder)
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


def _raw_tiles(path):
    """Every tile of a ZSTD COG decompressed to its raw bytes (padding included)."""
    import zstandard

    buf = path.read_bytes()
    offs_a, cnts_a, _ = cog_stream._ifd_arrays(buf)
    d = zstandard.ZstdDecompressor()
    return [d.decompress(buf[o:o + c], max_output_size=1 << 24)
            for o, c in zip(cog_stream._values(buf, offs_a).tolist(), cog_stream._values(buf, cnts_a).tolist())]


@pytest.mark.parametrize("dtype", ["float32", ">f4", "uint16"])
def test_zstd_tiles_decode_to_gdals_tile_bytes_padding_included(tmp_path, dtype):
    """Every tile, the partial ones at the right and bottom edges included, decompresses to the bytes of
    GDAL's own tile (pixels little-endian, padding zeros), whatever the array's byte order."""
    a = (np.arange(300 * 330) % 7 * 10.5 - 1).reshape(300, 330).astype(dtype)
    codec = Codec(blocksize=128)
    mine = _stream(tmp_path / "z.tif", a, codec, encoder=_zstd_tiles, nodata=0)
    ref = _gdal_cog(tmp_path / "g.tif", a.astype(np.dtype(dtype).newbyteorder("=")), codec, nodata=0)
    mine_raw, ref_raw = _raw_tiles(mine), _raw_tiles(ref)
    assert len(mine_raw) == 9 and mine_raw == ref_raw
    edge = np.frombuffer(mine_raw[-1], np.dtype(dtype).newbyteorder("<")).reshape(128, 128)
    assert (edge[300 - 256:, :] == 0).all() and (edge[:, 330 - 256:] == 0).all()
    with rasterio.open(mine) as m:
        np.testing.assert_array_equal(m.read(1), a)


def test_tile_major_groups_whole_tiles_and_the_edge_tile():
    a = np.arange(3 * 11, dtype=np.uint8).reshape(3, 11)
    full, edge = tile_major(a, 4)
    assert full.shape == (2, 3, 4) and full.flags.c_contiguous and edge.shape == (1, 3, 3)
    np.testing.assert_array_equal(full[1], a[:, 4:8])
    np.testing.assert_array_equal(edge[0], a[:, 8:])
    assert [g.shape for g in tile_major(a[:, :8], 4)] == [(2, 3, 4)]
    with pytest.raises(ValueError, match="more than one tile row"):
        tile_major(np.zeros((5, 4)), 4)


def test_zstd_tiles_refuses_other_codecs_and_oversized_tiles():
    with pytest.raises(ValueError, match="compressed by GDAL"):
        zstd_tiles([np.zeros((4, 4), np.float32)], Codec(compress="DEFLATE", blocksize=4))
    with pytest.raises(ValueError, match="not at most 4"):
        zstd_tiles([np.zeros((4, 5), np.float32)], Codec(blocksize=4))


def test_mapset_with_another_codec_uses_gdals_tiles(tmp_path, monkeypatch):
    """A codec zstd cannot write directly (here DEFLATE with a predictor) goes through GDAL's encoder,
    tile group by tile group; the maps read back equal and stay COGs."""
    from eco_value.outputs import invest_maps

    monkeypatch.setattr(invest_maps, "CODEC", Codec(compress="DEFLATE", level=6, blocksize=512, predictor=2))
    a = np.random.default_rng(2).choice(np.array([1.5, 66.0, 226.25], dtype=np.float32), size=(600, 1300))
    ms = invest_maps.MapSet(tmp_path, {"c_storage_bas": -1.0, "c_above_bas": -1.0}, width=1300, height=600,
                            transform=TRANSFORM, crs=CRS)
    for win in ms.windows(1024):
        block = a[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width]
        ms.append(ms.encode(win, {"c_storage_bas": block, "c_above_bas": block / 2}))
    paths = ms.finish()
    for name, want in (("c_storage_bas", a), ("c_above_bas", a / 2)):
        with rasterio.open(paths[name]) as d:
            assert d.tags(ns="IMAGE_STRUCTURE") == {"COMPRESSION": "DEFLATE", "INTERLEAVE": "BAND", "LAYOUT": "COG",
                                                    "PREDICTOR": "2"}
            np.testing.assert_array_equal(d.read(1), want)
