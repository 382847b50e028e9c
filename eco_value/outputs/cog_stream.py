"""Cloud-Optimized GeoTIFFs written in one streamed pass: every tile is compressed once, by any thread,
and appended in order to the final file; no temporary raster, no second (COG conversion) pass.

GDAL's COG driver only copies a finished dataset, so a map computed chunk by chunk used to be written
twice: into an uncompressed temporary GeoTIFF, then read back and compressed into the COG. Here:

1. **Header.** GDAL's COG driver writes the header of an all-nodata map of the same size, grid, tags and
   creation options (from a sparse in-memory source: nothing is stored for it). A COG without overviews
   is that header (TIFF header, GDAL's structural-metadata "ghost" area, the one IFD with its tile
   offset and byte-count arrays and GeoTIFF tags) followed by the tiles in row-major order, each with
   the leader and trailer the ghost area announces (``BLOCK_LEADER=SIZE_AS_UINT4``: the tile's size as
   a little-endian uint32 before it; ``BLOCK_TRAILER=LAST_4_BYTES_REPEATED``). The header is kept and
   its tiles dropped.
2. **Tiles.** ZSTD without predictor (the default): each tile is one zstd frame of its pixels, compressed
   by the zstd library in the worker thread (:func:`zstd_tiles`, GIL released); maps computed on
   tile-major land cover (:func:`tile_major`) are compressed in place, without a copy. Other codecs: a
   chunk of whole tiles (one tile row high) is compressed by GDAL's GeoTIFF driver into an in-memory
   GeoTIFF with the same tile size, codec and predictor (several maps as the bands of one dataset) and
   its tiles are cut out by its offset arrays (:func:`encode_tiles`; ~60 % more CPU than zstd direct).
3. **Append.** One thread appends each chunk's tiles (leader, bytes, trailer) in row-major order and
   records their offsets; at the end the two arrays are written into the header. The file then has the
   COG driver's layout (GDAL reads ``LAYOUT=COG`` from it); with GDAL's tiles it is byte for byte what
   the driver writes, with zstd's the frames also state their size (tiles decode to the same bytes).

Only little-endian files (GDAL's native order on every platform it ships for) are handled; classic TIFF
offsets are 32-bit, so maps that might exceed 4 GiB are written as BigTIFF, as GDAL's ``IF_SAFER`` does.
"""

from __future__ import annotations

import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS = 324, 325
_TYPE_SIZE = {3: 2, 4: 4, 16: 8}                          # SHORT, LONG, LONG8: the types of offset arrays
_TYPE_NP = {3: "<u2", 4: "<u4", 16: "<u8"}
_LEADER_BYTES = 4                                       # BLOCK_LEADER=SIZE_AS_UINT4
_TRAILER_BYTES = 4                                      # BLOCK_TRAILER=LAST_4_BYTES_REPEATED
_CLASSIC_MAX = (1 << 32) - 1
_BIGTIFF_ABOVE = 0.9 * (1 << 32)                        # uncompressed bytes above which a map is written as BigTIFF


@dataclass(frozen=True)
class Codec:
    """Tile size, codec, level and predictor, given once so that the header and the tiles agree."""
    compress: str = "ZSTD"
    level: int = 1
    blocksize: int = 512
    predictor: int = 1                                  # 1: none, 2: horizontal, 3: floating point

    def cog_options(self) -> dict:
        return {"compress": self.compress, "level": self.level, "blocksize": self.blocksize, "predictor": self.predictor}

    def gtiff_options(self) -> dict:
        level_key = {"ZSTD": "zstd_level", "DEFLATE": "zlevel"}[self.compress.upper()]
        return {"compress": self.compress, level_key: self.level, "predictor": self.predictor, "tiled": True,
                "blockxsize": self.blocksize, "blockysize": self.blocksize}


@dataclass(frozen=True)
class _Array:
    pos: int             # where the array's values are in the file
    dtype: str
    count: int


def _ifd_arrays(buf: bytes) -> tuple[_Array, _Array, int]:
    """Positions of the tile-offset and byte-count arrays of a little-endian TIFF's first IFD, and the next IFD."""
    if buf[:2] != b"II":
        raise ValueError("only little-endian TIFF is supported")
    version = struct.unpack_from("<H", buf, 2)[0]
    if version == 42:
        ifd = struct.unpack_from("<I", buf, 4)[0]
        n = struct.unpack_from("<H", buf, ifd)[0]
        entry, head, cnt_fmt, inline = 12, 2, "<HHII", 4
    elif version == 43:
        ifd = struct.unpack_from("<Q", buf, 8)[0]
        n = struct.unpack_from("<Q", buf, ifd)[0]
        entry, head, cnt_fmt, inline = 20, 8, "<HHQQ", 8
    else:
        raise ValueError("not a TIFF file")
    found = {}
    for i in range(n):
        at = ifd + head + entry * i
        tag, typ, count, value = struct.unpack_from(cnt_fmt, buf, at)
        if tag in (TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS):
            if typ not in _TYPE_SIZE:
                raise ValueError(f"unexpected type {typ} of TIFF tag {tag}")
            value_pos = at + entry - inline
            pos = value_pos if count * _TYPE_SIZE[typ] <= inline else value
            found[tag] = _Array(pos, _TYPE_NP[typ], count)
    nxt = struct.unpack_from("<I" if version == 42 else "<Q", buf, ifd + head + entry * n)[0]
    if set(found) != {TAG_TILE_OFFSETS, TAG_TILE_BYTE_COUNTS}:
        raise ValueError("not a tiled TIFF")
    return found[TAG_TILE_OFFSETS], found[TAG_TILE_BYTE_COUNTS], nxt


def _values(buf, arr: _Array) -> np.ndarray:
    return np.frombuffer(buf, dtype=arr.dtype, count=arr.count, offset=arr.pos).astype(np.int64)


def tiles_of(buf: bytes) -> list[bytes]:
    """The compressed tiles of an in-memory TIFF, in the order of its offset array (band by band for
    ``interleave="band"``, row-major within a band)."""
    offs, cnts, _ = _ifd_arrays(buf)
    counts = _values(buf, cnts)
    if (counts <= 0).any():
        raise ValueError("a tile was not written (sparse file): every tile must be stored")
    mv = memoryview(buf)
    return [bytes(mv[o:o + c]) for o, c in zip(_values(buf, offs).tolist(), counts.tolist())]


def encode_tiles(arrays: list[np.ndarray], codec: Codec, transform=None) -> list[list[bytes]]:
    """Compress same-shaped 2-D arrays (one chunk of several maps, whole tiles or the map's edge) into
    their tiles, as GDAL's GeoTIFF driver compresses them: one list of tiles (row-major) per array."""
    from rasterio.io import MemoryFile

    h, w = arrays[0].shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=w, height=h, count=len(arrays), dtype=arrays[0].dtype, interleave="band",
                      transform=transform, **codec.gtiff_options()) as ds:
            for i, a in enumerate(arrays, start=1):
                ds.write(a, i)
        tiles = tiles_of(mem.read())
    per = len(tiles) // len(arrays)
    return [tiles[i * per:(i + 1) * per] for i in range(len(arrays))]


def tile_major(a: np.ndarray, bs: int) -> list[np.ndarray]:
    """A window one tile row high (``h`` ≤ ``bs`` rows, starting on a tile boundary) as groups of tiles in
    row-major order, each tile a contiguous array: the whole-width tiles as one ``(k, h, bs)`` array, the
    narrower edge tile (if any) as a ``(1, h, r)`` array. An element-wise computation on these groups
    yields maps whose tiles are compressed without being copied (:func:`zstd_tiles`)."""
    h, w = a.shape
    if h > bs:
        raise ValueError(f"a window {h} px high is more than one tile row ({bs} px)")
    k, r = divmod(w, bs)
    groups = []
    if k:
        groups.append(np.ascontiguousarray(a[:, :k * bs].reshape(h, k, bs).transpose(1, 0, 2)))
    if r:
        groups.append(np.ascontiguousarray(a[:, k * bs:])[None])
    return groups


def direct_zstd(codec: Codec) -> bool:
    """Tiles of this codec are compressed by :func:`zstd_tiles` (ZSTD, no predictor), else by GDAL."""
    return codec.compress.upper() == "ZSTD" and codec.predictor == 1


_thread = threading.local()


def _compressor(level: int):
    """The calling thread's zstd compressor (a compression context is not thread-safe; one is reused)."""
    import zstandard

    cz = getattr(_thread, "zstd", {})
    _thread.zstd = cz
    if level not in cz:
        cz[level] = zstandard.ZstdCompressor(level=level)
    return cz[level]


def _padding_buffer(bs: int, dtype: np.dtype) -> np.ndarray:
    bufs = getattr(_thread, "pad", {})
    _thread.pad = bufs
    key = (bs, dtype.str)
    if key not in bufs:
        bufs[key] = np.zeros((bs, bs), dtype)
    return bufs[key]


def zstd_tiles(tiles, codec: Codec) -> list[bytes]:
    """TIFF ZSTD tiles (predictor 1) of 2-D arrays of at most ``blocksize`` × ``blocksize`` px, compressed
    in the calling thread by the zstd library, which releases the GIL.

    A TIFF ZSTD tile is one zstd frame of the tile's pixels, little-endian, row-major, padded to the full
    tile size; as GDAL, the padding of edge tiles is zeros (readers never see it). The frames differ
    from libtiff's by a few header bytes (they state the content size), not in what they decode to.
    Whole contiguous tiles (from :func:`tile_major`) are compressed in place; others are first copied
    into a zeroed tile. Measured on 617 MB of tiles of InVEST's 12 maps (one core): 0.55 s through
    GDAL's in-memory GeoTIFF, 0.34 s here, same sizes (``benchmarks/README.md``)."""
    if not direct_zstd(codec):
        raise ValueError(f"{codec.compress} with predictor {codec.predictor} is compressed by GDAL (encode_tiles)")
    bs = codec.blocksize
    cz = _compressor(codec.level)
    out = []
    for t in tiles:
        if t.ndim != 2 or t.shape[0] > bs or t.shape[1] > bs:
            raise ValueError(f"a tile of {t.shape} px is not at most {bs} × {bs}")
        if t.dtype.itemsize > 1 and not (t.dtype.isnative and sys.byteorder == "little"):
            t = t.astype(t.dtype.newbyteorder("<"))
        if t.shape != (bs, bs) or not t.flags.c_contiguous:
            h, w = t.shape
            buf = _padding_buffer(bs, t.dtype)
            buf[:h, :w] = t
            buf[:h, w:] = 0
            buf[h:] = 0
            t = buf
        out.append(cz.compress(t))
    return out


_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
TAG_WIDTH, TAG_HEIGHT = 256, 257
_LONG, _LONG8 = 4, 16


def _entries(buf: bytes) -> tuple[bool, int, list[tuple[int, int, int, bytes]]]:
    """(BigTIFF?, position of the first IFD, its entries as (tag, type, count, value bytes))."""
    big = struct.unpack_from("<H", buf, 2)[0] == 43
    ifd = struct.unpack_from("<Q" if big else "<I", buf, 8 if big else 4)[0]
    head, entry, inline, fmt = (8, 20, 8, "<HHQ") if big else (2, 12, 4, "<HHI")
    n = struct.unpack_from("<Q" if big else "<H", buf, ifd)[0]
    out = []
    for i in range(n):
        at = ifd + head + entry * i
        tag, typ, count = struct.unpack_from(fmt, buf, at)
        size = count * _TYPE_BYTES[typ]
        value_at = at + entry - inline
        if size > inline:
            value_at = struct.unpack_from("<Q" if big else "<I", buf, value_at)[0]
        out.append((tag, typ, count, bytes(buf[value_at:value_at + size])))
    return big, ifd, out


def _resized_header(template: bytes, width: int, height: int, n_tiles: int) -> bytes:
    """The template's header (TIFF header, ghost area, one IFD) for a map of ``width`` × ``height`` px in
    ``n_tiles`` tiles: the same tags, the size and the tile arrays (zeros, filled at the end) replaced."""
    big, ifd, entries = _entries(template)
    head, entry, inline, ptr = (8, 20, 8, "<Q") if big else (2, 12, 4, "<I")
    arr_type = _LONG8 if big else _LONG
    fixed = {TAG_WIDTH: (_LONG, 1, struct.pack("<I", width)), TAG_HEIGHT: (_LONG, 1, struct.pack("<I", height)),
             TAG_TILE_OFFSETS: (arr_type, n_tiles, bytes(n_tiles * _TYPE_BYTES[arr_type])),
             TAG_TILE_BYTE_COUNTS: (arr_type, n_tiles, bytes(n_tiles * _TYPE_BYTES[arr_type]))}
    entries = [(tag, *fixed[tag]) if tag in fixed else (tag, typ, count, value) for tag, typ, count, value in entries]
    return _rebuilt_header(template, big, ifd, entries)


def _rebuilt_header(template: bytes, big: bool, ifd: int, entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """The template's bytes before its IFD, then one IFD of ``entries`` with their out-of-line values."""
    head, entry, inline, ptr = (8, 20, 8, "<Q") if big else (2, 12, 4, "<I")
    pos = ifd + head + entry * len(entries) + (8 if big else 4)        # out-of-line values follow the IFD
    table, values = bytearray(), bytearray()
    for tag, typ, count, value in entries:
        if len(value) <= inline:
            field = value.ljust(inline, b"\0")
        else:
            if pos % 2:                                                  # values start on a word boundary
                values += b"\0"
                pos += 1
            field = struct.pack(ptr, pos)
            values += value
            pos += len(value)
        table += struct.pack("<HHQ" if big else "<HHI", tag, typ, count) + field
    return (bytes(template[:ifd]) + struct.pack("<Q" if big else "<H", len(entries)) + bytes(table)
            + struct.pack(ptr, 0) + bytes(values))


def cog_header(width: int, height: int, *, transform, crs, nodata: float, dtype: str, tags: dict[str, str],
               codec: Codec) -> tuple[bytes, int]:
    """The header (everything before the first tile) of the COG GDAL's COG driver writes for a map of this
    size, grid, tags and codec, and its number of tiles.

    GDAL writes the COG of a one-tile map with these tags (a sparse in-memory source: ~1 ms; a full-size
    template would cost ~0.07 s of compression per 16 Mpx), and its IFD is rewritten for the real size."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    bs = codec.blocksize
    big = "YES" if width * height * np.dtype(dtype).itemsize > _BIGTIFF_ABOVE else "NO"
    with MemoryFile() as src_mem, MemoryFile() as cog_mem:
        with src_mem.open(driver="GTiff", width=min(width, bs), height=min(height, bs), count=1, dtype=dtype, crs=crs,
                          transform=transform, nodata=nodata, tiled=True, blockxsize=bs, blockysize=bs,
                          sparse_ok=True) as src:
            src.update_tags(**tags)
        rio_copy(src_mem.name, cog_mem.name, driver="COG", overviews="NONE", bigtiff=big, **codec.cog_options())
        template = cog_mem.read()
    _, _, nxt = _ifd_arrays(template)
    if nxt:
        raise ValueError("the COG driver wrote more than one IFD (overviews or a mask): cannot stream")
    ghost = template[: min(len(template), 1024)]
    if b"BLOCK_LEADER=SIZE_AS_UINT4" not in ghost or b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED" not in ghost:
        raise ValueError("GDAL's COG layout without tile leaders and trailers is not supported")
    n_tiles = -(-width // bs) * -(-height // bs)
    return _resized_header(template, width, height, n_tiles), n_tiles


TAG_GDAL_METADATA = 42112
_XML_SPECIAL = '&<>"'                                   # text GDAL would escape in its metadata XML


def retagged_header(header: bytes, old: dict[str, str], new: dict[str, str]) -> bytes | None:
    """A header from :func:`cog_header` with the values of its metadata items ``old`` replaced by ``new``
    (same keys): GDAL's COG driver costs ~4.5 ms of CPU a header, the same for every map of a grid, so
    maps that differ only by their metadata (InVEST's 12 maps: the layer name) share one. ``None`` when the
    items cannot be found verbatim (then call :func:`cog_header`)."""
    # only text that stands verbatim in GDAL's XML (xml.sax.saxutils.escape would cost ~20 ms of imports)
    if set(old) != set(new) or any(c in v for v in (*old.values(), *new.values(), *old) for c in _XML_SPECIAL):
        return None
    big, ifd, entries = _entries(header)
    out = []
    for tag, typ, count, value in entries:
        if tag == TAG_GDAL_METADATA:
            for k, v in old.items():
                item = f'<Item name="{k}">{v}</Item>'.encode()
                if value.count(item) != 1:
                    return None
                value = value.replace(item, f'<Item name="{k}">{new[k]}</Item>'.encode())
            count = len(value)
        out.append((tag, typ, count, value))
    if not any(t == TAG_GDAL_METADATA for t, *_ in entries):
        return None
    return _rebuilt_header(header, big, ifd, out)


class CogStream:
    """One COG file written tile after tile in row-major order (not thread-safe: one appending thread)."""

    def __init__(self, path: Path, header: bytes, n_tiles: int):
        self.path = Path(path)
        self._offs, self._cnts, _ = _ifd_arrays(header)
        if self._offs.count != n_tiles:
            raise ValueError("header and tile count disagree")
        self._classic = header[2] == 42
        self._off = np.zeros(n_tiles, dtype=np.int64)
        self._cnt = np.zeros(n_tiles, dtype=np.int64)
        self._next = 0
        self._f = open(self.path, "wb")          # noqa: SIM115 - held open from tile to tile, closed in close()/abort()
        self._f.write(header)
        self._pos = len(header)

    def append(self, tiles: list[bytes]) -> None:
        """The next tiles of the map, in row-major order."""
        f = self._f
        for t in tiles:
            n = len(t)
            f.write(struct.pack("<I", n))
            f.write(t)
            f.write(t[-_TRAILER_BYTES:])
            self._off[self._next] = self._pos + _LEADER_BYTES
            self._cnt[self._next] = n
            self._pos += _LEADER_BYTES + n + _TRAILER_BYTES
            self._next += 1
        if self._classic and self._pos > _CLASSIC_MAX:
            raise ValueError(f"{self.path.name}: more than 4 GiB of tiles in a classic TIFF")

    def close(self) -> None:
        """Write the tile arrays into the header and close; every tile must have been appended."""
        if self._next != len(self._off):
            raise ValueError(f"{self.path.name}: {self._next} of {len(self._off)} tiles written")
        for arr, vals in ((self._offs, self._off), (self._cnts, self._cnt)):
            if vals.max(initial=0) > np.iinfo(np.dtype(arr.dtype)).max:
                raise ValueError(f"{self.path.name}: tile offsets exceed the header's {arr.dtype} arrays")
            self._f.seek(arr.pos)
            self._f.write(vals.astype(arr.dtype).tobytes())
        self._f.close()

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.path.unlink(missing_ok=True)
