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
