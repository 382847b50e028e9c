"""Zonal sums with exact area weights at polygon edges (exactextract coverage fractions).

For each zone layer, :func:`zone_weights` computes once which pixels each polygon covers and by
what fraction (exactextract ``cell_id`` + ``coverage``). :func:`zonal_sums` then builds a lazy dask
graph: one task per raster chunk that sums the chunk's pixel values by zone with ``np.bincount``,
and a tree reduction over chunks. Nothing is computed until the pipeline's single ``compute``.
A pixel split between two parcels counts in each by its covered share, so parcels that tile the
county sum to the county total.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from ..grid import Grid


@dataclass
class ZoneWeights:
    """Sparse (zone, pixel, coverage fraction) triplets of one zone layer on one grid."""

    ids: list[str]
    zone: np.ndarray       # int32 zone index per triplet
    pixel: np.ndarray      # int64 flat pixel index (row * width + col)
    coverage: np.ndarray   # float64 covered fraction of the pixel

    @property
    def n(self) -> int:
        return len(self.ids)

    def split_by_chunks(self, grid: Grid, row_chunks, col_chunks) -> dict[tuple[int, int], tuple]:
        rows = self.pixel // grid.width
        cols = self.pixel % grid.width
        rb = np.cumsum((0,) + tuple(row_chunks))
        cb = np.cumsum((0,) + tuple(col_chunks))
        bi = np.searchsorted(rb, rows, side="right") - 1
        bj = np.searchsorted(cb, cols, side="right") - 1
        key = bi * len(col_chunks) + bj
        order = np.argsort(key, kind="stable")
        key_s = key[order]
        out = {}
        bounds = np.searchsorted(key_s, np.arange(len(row_chunks) * len(col_chunks) + 1))
        for i in range(len(row_chunks)):
            for j in range(len(col_chunks)):
                k = i * len(col_chunks) + j
                sel = order[bounds[k]:bounds[k + 1]]
                lr = rows[sel] - rb[i]
                lc = cols[sel] - cb[j]
                out[(i, j)] = (lr * col_chunks[j] + lc, self.zone[sel], self.coverage[sel])
        return out


def zone_weights(gdf, id_field: str, grid: Grid, template_path: str) -> ZoneWeights:
    """Coverage fractions of every polygon of ``gdf`` on ``grid`` (``template_path`` is a raster on it)."""
    from exactextract import exact_extract

    if gdf.crs is not None and gdf.crs.to_string() != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    gdf = gdf[[id_field, "geometry"]].reset_index(drop=True)
    df = exact_extract(template_path, gdf, ["cell_id", "coverage"], include_cols=[id_field], output="pandas")
    ids = df[id_field].astype(str).tolist()
    lens = np.array([len(c) for c in df["cell_id"]])
    zone = np.repeat(np.arange(len(ids), dtype=np.int32), lens)
    pixel = np.concatenate([np.asarray(c, dtype=np.int64) for c in df["cell_id"]]) if len(ids) else np.zeros(0, np.int64)
    cov = np.concatenate([np.asarray(c, dtype=np.float64) for c in df["coverage"]]) if len(ids) else np.zeros(0)
    return ZoneWeights(ids, zone, pixel, cov)


def _block_sums(n_zones: int, triplets, values: dict, coded: dict) -> dict[str, np.ndarray]:
    pix, zone, cov = triplets
    out = {}
    for name, arr in values.items():
        v = np.asarray(arr, dtype=np.float64).ravel()[pix]
        v = np.where(np.isnan(v), 0.0, v)
        out[name] = np.bincount(zone, weights=cov * v, minlength=n_zones)
    for name, (codes, arr, n_codes) in coded.items():
        c = np.asarray(codes).ravel()[pix].astype(np.int64)
        c = np.where((c >= 0) & (c < n_codes), c, n_codes)
        w = cov if arr is None else cov * np.nan_to_num(np.asarray(arr, dtype=np.float64).ravel()[pix])
        out[name] = np.bincount(zone * (n_codes + 1) + c, weights=w, minlength=n_zones * (n_codes + 1)) \
            .reshape(n_zones, n_codes + 1)[:, :n_codes]
    return out


def _add(parts: list[dict]) -> dict:
    out = {k: v.copy() for k, v in parts[0].items()}
    for p in parts[1:]:
        for k, v in p.items():
            out[k] += v
    return out


def zonal_sums(weights: ZoneWeights, grid: Grid, values: dict[str, xr.DataArray] | None = None,
               coded: dict[str, tuple[xr.DataArray, xr.DataArray | None, int]] | None = None):
    """Lazy per-zone sums: ``Σ coverage · value`` for each value, and by class code for ``coded``.

    ``values``: name → per-pixel DataArray (NaN counts as 0). ``coded``: name → (codes, value or
    None for area, number of codes) giving an (n_zones, n_codes) matrix. Multiply by the pixel area
    beforehand when the values are per hectare. Returns a ``dask.delayed`` dict of numpy arrays.
    """
    values = values or {}
    coded = coded or {}
    arrays = [a.data for a in values.values()] + [c.data for c, _, _ in coded.values()] + \
        [v.data for _, v, _ in coded.values() if v is not None]
    ref = arrays[0]
    arrays = [a.rechunk(ref.chunks) for a in arrays]
    row_chunks, col_chunks = ref.chunks
    trip = weights.split_by_chunks(grid, row_chunks, col_chunks)
    parts = []
    for i in range(len(row_chunks)):
        for j in range(len(col_chunks)):
            t = trip[(i, j)]
            if len(t[0]) == 0:
                continue
            vb = {k: a.data.rechunk(ref.chunks).blocks[i, j] for k, a in values.items()}
            cb = {k: (c.data.rechunk(ref.chunks).blocks[i, j],
                      None if v is None else v.data.rechunk(ref.chunks).blocks[i, j], n) for k, (c, v, n) in coded.items()}
            parts.append(dask.delayed(_block_sums)(weights.n, t, vb, cb))
    while len(parts) > 1:  # tree reduction keeps memory flat
        parts = [dask.delayed(_add)(parts[k:k + 8]) for k in range(0, len(parts), 8)]
    if not parts:
        empty = {k: np.zeros(weights.n) for k in values} | {k: np.zeros((weights.n, n)) for k, (_, _, n) in coded.items()}
        return dask.delayed(lambda: empty)()
    return parts[0]


def zonal_sums_many(weights: dict[str, ZoneWeights], grid: Grid, values: dict[str, xr.DataArray],
                    coded: dict[str, tuple], coded_only: dict[str, dict[str, tuple]] | None = None,
                    block_stats: dict[str, tuple] | None = None,
                    block_writes: dict[str, tuple] | None = None):
    """:func:`zonal_sums` for several zone layers at once: one task per raster chunk serves them all,
    so each chunk's values are computed once and released as soon as that task has run.

    ``coded_only``: extra coded sums for one zone layer only (e.g. by land-cover class for the county).
    ``block_stats``: name → (block function, merge function, DataArrays): the function of each chunk's
    blocks, merged over chunks, gathered in the same pass under the key ``"__stats__"`` (input validation).
    ``block_writes``: name → (DataArray, GeoTIFF path, lock): each chunk is also written into its
    window of an existing GeoTIFF by the same task (outputs cost no second pass and no extra memory).
    Returns a ``dask.delayed`` dict kind → dict name → array.
    """
    coded_only = coded_only or {}
    block_stats = block_stats or {}
    block_writes = block_writes or {}
    ref = next(iter(values.values())).data
    row_chunks, col_chunks = ref.chunks
    trips = {k: w.split_by_chunks(grid, row_chunks, col_chunks) for k, w in weights.items()}
    ns = {k: w.n for k, w in weights.items()}
    all_coded = dict(coded)
    for extra in coded_only.values():
        all_coded.update(extra)
    only = {k: set(v) for k, v in coded_only.items()}
    blocks = lambda a, i, j: a.data.rechunk(ref.chunks).blocks[i, j]  # noqa: E731
    parts = []
    for i in range(len(row_chunks)):
        for j in range(len(col_chunks)):
            t = {k: tr[(i, j)] for k, tr in trips.items()}
            if not any(len(x[0]) for x in t.values()) and not block_writes:
                continue
            vb = {k: blocks(a, i, j) for k, a in values.items()}
            cb = {k: (blocks(c, i, j), None if v is None else blocks(v, i, j), n) for k, (c, v, n) in all_coded.items()}
            sb = {k: (fn, tuple(blocks(a, i, j) for a in arrs)) for k, (fn, _m, arrs) in block_stats.items()}
            win = (int(sum(row_chunks[:i])), int(sum(col_chunks[:j])))
            wb = {k: (blocks(a, i, j), path, lock, win) for k, (a, path, lock) in block_writes.items()}
            parts.append(dask.delayed(_block_sums_many)(ns, t, vb, cb, only, sb, wb))
    merges = {k: m for k, (_fn, m, _arrs) in block_stats.items()}
    while len(parts) > 1:
        parts = [dask.delayed(_add_many)(parts[k:k + 8], merges) for k in range(0, len(parts), 8)]
    return parts[0]


def _stats(stats):
    return {k: fn(*arrs) for k, (fn, arrs) in stats.items()}


def _merge_stats(a, b, merges):
    out = dict(a)
    for k, s in b.items():
        out[k] = merges[k](out[k], s) if k in out else s
    return out


def _write_blocks(writes):
    import rasterio
    from rasterio.windows import Window

    for _name, (a, path, lock, (r0, c0)) in writes.items():
        a = np.asarray(a, dtype=np.float32)
        with lock:
            with rasterio.open(path, "r+") as dst:
                dst.write(np.where(np.isnan(a), np.float32(dst.nodata), a), 1, window=Window(c0, r0, a.shape[1], a.shape[0]))


def _block_sums_many(ns, trips, values, coded, only, stats=None, writes=None):
    extra_names = set().union(*only.values()) if only else set()
    _write_blocks(writes or {})
    out = {"__stats__": _stats(stats or {})}
    for kind, t in trips.items():
        cod = {k: v for k, v in coded.items() if k not in extra_names or k in only.get(kind, set())}
        if not cod and not values:
            continue
        if len(t[0]) == 0:
            out[kind] = {k: np.zeros(ns[kind]) for k in values} | {k: np.zeros((ns[kind], n)) for k, (_, _, n) in cod.items()}
        else:
            out[kind] = _block_sums(ns[kind], t, values, cod)
    return out


def _add_many(parts, merges):
    out = {kind: _add([p[kind] for p in parts]) for kind in parts[0] if kind != "__stats__"}
    st = {}
    for p in parts:
        st = _merge_stats(st, p["__stats__"], merges)
    out["__stats__"] = st
    return out


def class_coverage(weights: ZoneWeights, codes: np.ndarray, n_codes: int = 256) -> np.ndarray:
    """Σ coverage of all zones' pixels by class code (e.g. the region's land-cover extent in pixels)."""
    c = np.asarray(codes).ravel()[weights.pixel].astype(np.int64)
    ok = (c >= 0) & (c < n_codes)
    return np.bincount(c[ok], weights=weights.coverage[ok], minlength=n_codes)


def coverage_raster(weights: ZoneWeights, grid: Grid, like: xr.DataArray) -> xr.DataArray:
    """Lazy raster of the covered fraction of each pixel by all zones of ``weights`` (chunk by chunk)."""
    import dask.array as da

    row_chunks, col_chunks = like.data.chunks
    trip = weights.split_by_chunks(grid, row_chunks, col_chunks)

    def block(i, j):
        pix, _zone, cov = trip[(i, j)]
        out = np.zeros(row_chunks[i] * col_chunks[j])
        np.add.at(out, pix, cov)
        return np.minimum(out, 1.0).reshape(row_chunks[i], col_chunks[j])

    rows = [[da.from_delayed(dask.delayed(block)(i, j), (row_chunks[i], col_chunks[j]), dtype="float64")
             for j in range(len(col_chunks))] for i in range(len(row_chunks))]
    return xr.DataArray(da.block(rows), dims=like.dims, coords=like.coords, name="region_coverage")


def zonal_sums_by_id(zone_ids: xr.DataArray, n_zones: int, values: dict[str, xr.DataArray]):
    """Lazy per-zone sums for a zone-id raster (pixel-centre membership; ids < 0 or >= n are skipped).

    The out-of-core path for large regions (province scale): memory is one chunk per thread, and
    nothing of size O(pixels) is ever held, unlike the exact-coverage triplets of :func:`zonal_sums`.
    """
    names = list(values)
    ref = zone_ids.data

    def block(z, *vals):
        z = z.ravel().astype(np.int64)
        ok = (z >= 0) & (z < n_zones)
        zz = z[ok]
        out = np.zeros((len(vals), n_zones))
        for i, v in enumerate(vals):
            v = np.asarray(v, dtype=np.float64).ravel()[ok]
            out[i] = np.bincount(zz, weights=np.nan_to_num(v), minlength=n_zones)
        return out

    arrays = [values[k].data.rechunk(ref.chunks) for k in names]
    parts = []
    for i in range(len(ref.chunks[0])):
        for j in range(len(ref.chunks[1])):
            parts.append(dask.delayed(block)(ref.blocks[i, j], *[a.blocks[i, j] for a in arrays]))
    while len(parts) > 1:
        parts = [dask.delayed(sum)(parts[k:k + 8]) for k in range(0, len(parts), 8)]
    return dask.delayed(lambda m: {k: m[i] for i, k in enumerate(names)})(parts[0])
