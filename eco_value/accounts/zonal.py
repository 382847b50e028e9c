"""Zonal sums with exact area weights at polygon edges (exactextract coverage fractions), chunk by chunk.

:func:`zone_weights` keeps only the zone polygons (in the grid's CRS) and a spatial index: O(zones),
never O(pixels). Each raster chunk's weights are made inside that chunk's task
(:meth:`ZoneWeights.chunk`): exactextract's coverage fractions on the chunk's window; pixels a zone
covers wholly (fraction 1) become a chunk-sized zone-id raster (summed with ``np.bincount`` as
:func:`zonal_sums_by_id` does), only the fractional edge pixels stay (pixel, zone, fraction)
triplets. Memory is thus one chunk per thread whatever the number of zones, and the numbers are
those of whole-raster exact coverage: the same fractions at edges, 1 inside. :func:`zonal_sums`
builds a lazy dask graph: one task per raster chunk, and a tree reduction over chunks; nothing is
computed until the pipeline's single ``compute``. A pixel split between two parcels counts in each
by its covered share, so parcels that tile the county sum to the county total.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask
import numpy as np
import xarray as xr

from ..grid import Grid


@dataclass
class ChunkWeights:
    """The weights of one zone layer on one raster chunk (flat indices are row-major in the chunk).

    ``inner``/``inner_zone``: pixels covered wholly by one zone (coverage 1), ascending, and that
    zone; ``edge``: (pixel, zone, fraction) of every other covered pixel (fractional coverage, or a
    second zone covering a pixel wholly where zones overlap).
    """

    inner: np.ndarray       # int64 flat pixel index
    inner_zone: np.ndarray  # int64 zone index
    edge: tuple             # (int64 pixel, int64 zone, float64 fraction)

    @property
    def empty(self) -> bool:
        return len(self.inner) == 0 and len(self.edge[0]) == 0


@dataclass
class ZoneWeights:
    """The zones of one layer on one grid: ids, polygons in the grid's CRS and their bounds (O(zones))."""

    ids: list[str]
    geoms: np.ndarray      # shapely geometries, grid CRS, in the order of ``ids``
    grid: Grid
    crs_wkt: str | None = None
    _tree: object = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.ids)

    def candidates(self, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """Indices (ascending) of the zones whose bounding box meets the window's."""
        import shapely
        from shapely import STRtree

        if self._tree is None:
            self._tree = STRtree(self.geoms)
        return np.sort(self._tree.query(shapely.box(*_window_bounds(self.grid, r0, c0, h, w))))

    def part(self, r0: int, c0: int, h: int, w: int) -> "ZonePart":
        """What one chunk's task needs to make its weights (the candidate polygons only)."""
        z = self.candidates(r0, c0, h, w)
        return ZonePart(self.n, z, self.geoms[z], _window_bounds(self.grid, r0, c0, h, w), (h, w), self.crs_wkt)

    def chunk(self, r0: int, c0: int, h: int, w: int) -> ChunkWeights:
        return self.part(r0, c0, h, w).weights()

    def flat(self) -> "FlatWeights":
        """Every (zone, pixel, coverage) of these zones on the whole grid — O(covered pixels): for a few
        zones (a project's parcels, one unit), never for a region's thousands of parcels."""
        zs, ps, cs = [], [], []
        step, width = self.grid.chunk_px, self.grid.width
        sizes = [[step] * (n // step) + ([n % step] if n % step else []) for n in (self.grid.height, self.grid.width)]
        for _i, _j, r0, c0, h, w in _chunks(*sizes):
            if not len(self.candidates(r0, c0, h, w)):
                continue
            cw = self.chunk(r0, c0, h, w)
            pix, zone, cov = cw.edge
            for local, z, c in ((cw.inner, cw.inner_zone, np.ones(len(cw.inner))), (pix, zone, cov)):
                zs.append(np.asarray(z, dtype=np.int64))
                ps.append((r0 + local // w) * width + (c0 + local % w))
                cs.append(np.asarray(c, dtype=np.float64))
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt))  # noqa: E731
        return FlatWeights(self.ids, cat(zs, np.int64), cat(ps, np.int64), cat(cs, np.float64))


@dataclass
class FlatWeights:
    """The weights of a few zones as flat arrays over the whole grid (see :meth:`ZoneWeights.flat`)."""

    ids: list[str]
    zone: np.ndarray       # int64 zone index
    pixel: np.ndarray      # int64 flat pixel index (row-major over the grid)
    coverage: np.ndarray   # float64 covered fraction

    @property
    def n(self) -> int:
        return len(self.ids)


@dataclass
class ZonePart:
    """The zones meeting one raster window, enough to compute its :class:`ChunkWeights` anywhere."""

    n: int
    zones: np.ndarray
    geoms: np.ndarray
    bounds: tuple
    shape: tuple
    crs_wkt: str | None

    def weights(self) -> ChunkWeights:
        return chunk_weights(self.geoms, self.zones, self.bounds, self.shape, self.crs_wkt)


def _window_bounds(grid: Grid, r0: int, c0: int, h: int, w: int) -> tuple[float, float, float, float]:
    t = grid.transform
    x0, x1 = t.c + c0 * t.a, t.c + (c0 + w) * t.a
    y0, y1 = t.f + r0 * t.e, t.f + (r0 + h) * t.e
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


_NONE = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def chunk_weights(geoms, zones, bounds, shape, crs_wkt=None) -> ChunkWeights:
    """Exact coverage of the window ``bounds`` (``shape`` pixels) by ``geoms`` (zone indices ``zones``).

    A zone whose polygon holds the whole window in its interior covers every pixel wholly (no
    coverage computation: the county and township polygons are walked only for the chunks on their
    boundaries); the others go to exactextract, as WKB.
    """
    if len(zones) == 0:
        return ChunkWeights(np.zeros(0, np.int64), np.zeros(0, np.int64), _NONE)
    import shapely

    h, w = shape
    zones = np.asarray(zones, dtype=np.int64)
    geoms = np.asarray(geoms, dtype=object)
    whole_window = shapely.contains_properly(geoms, shapely.box(*bounds))
    zone_parts, pix_parts, cov_parts = [], [], []
    for z in zones[whole_window]:
        zone_parts.append(np.full(h * w, z, np.int64))
        pix_parts.append(np.arange(h * w, dtype=np.int64))
        cov_parts.append(np.ones(h * w))
    if not whole_window.all():
        from exactextract import exact_extract
        from exactextract.raster import NumPyRasterSource

        rast = NumPyRasterSource(np.zeros((h, w), np.uint8), *bounds, srs_wkt=crs_wkt)
        src = _wkb_source(geoms[~whole_window], zones[~whole_window], crs_wkt)
        df = exact_extract(rast, src, ["cell_id", "coverage"], include_cols=["_z"], output="pandas")
        lens = np.array([len(c) for c in df["cell_id"]], dtype=np.int64)
        if lens.sum():
            zone_parts.append(np.repeat(df["_z"].to_numpy(np.int64), lens))
            pix_parts.append(np.concatenate([np.asarray(c, dtype=np.int64) for c in df["cell_id"]]))
            cov_parts.append(np.concatenate([np.asarray(c, dtype=np.float64) for c in df["coverage"]]))
    if not zone_parts:
        return ChunkWeights(np.zeros(0, np.int64), np.zeros(0, np.int64), _NONE)
    zone, pix, cov = (np.concatenate(p) for p in (zone_parts, pix_parts, cov_parts))
    whole = cov == 1.0
    ids = np.full(h * w, -1, np.int64)
    ids[pix[whole]] = zone[whole]
    # a pixel wholly inside two overlapping zones keeps one in the id raster, the other as a triplet
    second = whole.copy()
    second[whole] = ids[pix[whole]] != zone[whole]
    edge = ~whole | second
    inner = np.flatnonzero(ids >= 0)
    return ChunkWeights(inner, ids[inner], (pix[edge], zone[edge], cov[edge]))


def _wkb_source(geoms, zones, crs_wkt):
    """exactextract features from shapely geometries as WKB (no GeoJSON text for large polygons)."""
    import shapely
    from exactextract.feature import Feature, FeatureSource

    class WkbFeature(Feature):
        def __init__(self, wkb, z):
            Feature.__init__(self)
            self.wkb, self.z = wkb, z

        def geometry(self):
            return self.wkb

        def set_geometry_format(self):
            return "wkb"

        def get(self, name):
            return self.z

        def fields(self):
            return ["_z"]

    class WkbSource(FeatureSource):
        def count(self):
            return len(zones)

        def __iter__(self):
            for g, z in zip(shapely.to_wkb(geoms), zones):
                yield WkbFeature(g, int(z))

        def srs_wkt(self):
            return crs_wkt

    return WkbSource()


def zone_weights(gdf, id_field: str, grid: Grid, template_path: str | None = None) -> ZoneWeights:
    """The zones of ``gdf`` on ``grid``; their exact coverage is made chunk by chunk when summed.

    ``template_path`` (a raster on the grid) is no longer read; it is kept for callers' compatibility.
    """
    import pyproj

    if gdf.crs is not None and gdf.crs.to_string() != grid.crs:
        gdf = gdf.to_crs(grid.crs)
    ids = gdf[id_field].astype(str).tolist()
    return ZoneWeights(ids, np.asarray(gdf.geometry.values, dtype=object), grid, pyproj.CRS(grid.crs).to_wkt())


def _chunks(row_chunks, col_chunks):
    """(i, j, r0, c0, h, w) of every chunk."""
    rb = np.cumsum((0,) + tuple(row_chunks))
    cb = np.cumsum((0,) + tuple(col_chunks))
    for i, h in enumerate(row_chunks):
        for j, w in enumerate(col_chunks):
            yield i, j, int(rb[i]), int(cb[j]), int(h), int(w)


RUNS_MAX_SHARE = 0.25   # keyed sums go by runs of equal keys when there are at most this many runs per pixel


class _Keyed:
    """Sums of chunk-sized arrays by an int64 key per pixel (``minlength`` slots, keys ≥ it dropped).

    Where equal keys come in runs along the row-major pixels (a zone's pixels in each row, a land-cover
    patch), each run is summed by ``np.add.reduceat`` (pairwise, no dependency chain) and the runs by
    key with ``np.bincount``; else one ``np.bincount`` over the pixels. Both are exact to the last few
    ulps of the sum of absolute values (the order of the additions differs, not the terms).
    """

    def __init__(self, keys: np.ndarray, minlength: int):
        self.n = minlength
        self.keys = keys
        starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        if len(starts) + 1 <= RUNS_MAX_SHARE * len(keys):
            self.starts = np.concatenate(([0], starts))
            self.run_keys = keys[self.starts]
            self.lengths = np.diff(np.append(self.starts, len(keys))).astype(np.float64)
        else:
            self.starts = None

    def sum(self, a: np.ndarray | None) -> np.ndarray:
        """Σ a by key (a None: the number of pixels) as float64 of ``minlength``."""
        if self.starts is None:
            s = np.bincount(self.keys, weights=a, minlength=self.n + 1)
        else:
            w = self.lengths if a is None else np.add.reduceat(a, self.starts, dtype=np.float64)
            s = np.bincount(self.run_keys, weights=w, minlength=self.n + 1)
        return s[:self.n].astype(np.float64, copy=False)


def _block_sums(n_zones: int, cw: ChunkWeights, values: dict, coded: dict, flat: dict | None = None) -> dict[str, np.ndarray]:
    """Per-zone sums of one chunk: interior pixels by zone id (weight 1), edge pixels by fraction.

    Interior pixels are summed over a chunk-sized zone-id raster (pixels outside every zone, or only
    at edges, take an extra slot) by runs of equal ids (:class:`_Keyed`: no value is gathered); edge
    triplets with ``np.bincount``. ``flat`` caches, across the zone layers of one chunk, each array as
    a flat array (float32 pixels kept as they are, summed in float64) with NaN as 0 (keyed by the array's identity), each codes array clipped to its
    slots, and the sums of a chunk held wholly by one zone (the county's and a township's interior
    chunks share them).
    """
    flat = {} if flat is None else flat
    pix, zone, cov = cw.edge
    sel, zi = cw.inner, cw.inner_zone
    has_edge = len(pix) > 0

    def nan0(arr, coded=False):   # coded sums also take ±inf as the largest finite numbers (nan_to_num)
        k = id(arr)
        if k not in flat:
            a = np.asarray(arr).ravel()
            if a.dtype != np.float32:   # float32 (the kernel's pixels) stays: every sum below accumulates in float64
                a = a.astype(np.float64, copy=False)
            flat[k] = (np.where(np.isnan(a), 0.0, a) if np.isnan(a).any() else a, arr)   # (arr kept alive: ids stay unique)
        a = flat[k][0]
        if coded:
            k = ("finite", id(arr))
            if k not in flat:
                flat[k] = (np.nan_to_num(a.astype(np.float64)) if np.isinf(a).any() else a, arr)
            a = flat[k][0]
        return a

    def slots(codes, n_codes):   # integer codes, those outside 0..n_codes-1 → n_codes (no copy when none is)
        k = ("codes", id(codes), n_codes)
        if k not in flat:
            c = np.asarray(codes).ravel()
            if c.dtype.kind not in "iu":
                c = c.astype(np.int64)
            if c.size and (c.min() < 0 or c.max() >= n_codes):
                c = np.where((c >= 0) & (c < n_codes), c.astype(np.int64), n_codes)
            flat[k] = (c, codes)
        return flat[k][0]

    first = next(iter(values.values()), None)
    if first is None:
        first = next(iter(coded.values()))[0]
    n_px = np.asarray(first).size
    # one zone holds the whole chunk (no edge): its sums are the chunk's, shared by every such layer
    whole = not has_edge and len(sel) == n_px and n_px > 0 and zi[0] == zi[-1] and (zi == zi[0]).all()
    if whole:
        z0 = int(zi[0])
    elif len(sel) == n_px:
        zid = zi                                    # every pixel interior (ascending): no copy
    else:
        zid = np.full(n_px, n_zones, np.int64)      # outside every zone (or at an edge only) → the extra slot
        zid[sel] = zi

    out = {}
    inner = None
    for name, arr in values.items():
        a = nan0(arr)
        s = np.zeros(n_zones)
        if whole:
            k = ("whole", id(arr))
            if k not in flat:
                flat[k] = (np.add.reduce(a, dtype=np.float64), arr)
            s[z0] = flat[k][0]
        else:
            inner = inner or _Keyed(zid, n_zones)
            s += inner.sum(a)
            if has_edge:
                s += np.bincount(zone, weights=cov * a[pix], minlength=n_zones)
        out[name] = s
    keyed: dict = {}
    for name, (codes, arr, n_codes) in coded.items():
        c = slots(codes, n_codes)
        a = None if arr is None else nan0(arr, coded=True)
        s = np.zeros((n_zones, n_codes + 1))
        if whole:
            kk = ("whole-keys", id(codes), n_codes)
            if kk not in flat:
                flat[kk] = (_Keyed(c, n_codes + 1), codes)
            k = ("whole-coded", id(codes), n_codes, None if arr is None else id(arr))
            if k not in flat:
                flat[k] = (flat[kk][0].sum(a), (codes, arr))
            s[z0] = flat[k][0]
            out[name] = s[:, :n_codes]
            continue
        m = n_zones * (n_codes + 1)
        kk = (id(codes), n_codes)
        if kk not in keyed:   # flat (zone, code) index; pixels outside every zone → beyond m
            keyed[kk] = (_Keyed(zid * (n_codes + 1) + c, m), zone * (n_codes + 1) + c[pix] if has_edge else None)
        k_in, k_edge = keyed[kk]
        s = s.ravel()
        s += k_in.sum(a)
        if has_edge:
            s += np.bincount(k_edge, weights=cov if a is None else cov * a[pix], minlength=m)
        out[name] = s.reshape(n_zones, n_codes + 1)[:, :n_codes]
    return out


def _zeros(n: int, values, coded) -> dict[str, np.ndarray]:
    return {k: np.zeros(n) for k in values} | {k: np.zeros((n, c[2])) for k, c in coded.items()}


@dataclass
class _Rows:
    """One chunk's per-zone sums as the rows of the zones it meets (the others are 0): a chunk's
    result then holds ~100 parcels' rows, not the region's thousands (made dense when added)."""

    zones: np.ndarray   # ascending zone indices
    rows: np.ndarray    # their sums: (len(zones),) or (len(zones), n_codes)
    n: int

    def dense(self) -> np.ndarray:
        out = np.zeros((self.n,) + self.rows.shape[1:])
        out[self.zones] = self.rows
        return out


def _part_sums(n_zones: int, part: ZonePart, values: dict, coded: dict, flat: dict | None = None) -> dict:
    cw = part.weights()
    zones = np.asarray(part.zones, dtype=np.int64)
    if cw.empty:
        return {k: _Rows(zones[:0], v[:0], n_zones) for k, v in _zeros(0, values, coded).items()}
    if len(zones) == n_zones:
        return _block_sums(n_zones, cw, values, coded, flat)
    # summed by the chunk's own zones (positions in ``zones``): work and memory O(zones met), not O(region's zones)
    local = np.full(n_zones, -1, np.int64)
    local[zones] = np.arange(len(zones))
    pix, zone, cov = cw.edge
    cw = ChunkWeights(cw.inner, local[cw.inner_zone], (pix, local[zone], cov))
    return {k: _Rows(zones, v, n_zones) for k, v in _block_sums(len(zones), cw, values, coded, flat).items()}


def _add(parts: list[dict], dense: bool = False) -> dict:
    """Σ of per-zone sums (arrays or :class:`_Rows`); each zone's terms added in the parts' order.

    Rows stay rows (the union of the parts' zones) while they are fewer than half the zones, so a
    branch of the tree reduction holds the zones its chunks met; ``dense``: arrays (the tree's root).
    """
    out = {}
    for k in parts[0]:
        vs = [p[k] for p in parts]
        if not dense and all(isinstance(v, _Rows) for v in vs):
            zones = vs[0].zones
            for v in vs[1:]:
                zones = np.union1d(zones, v.zones)
            if len(zones) * 2 < vs[0].n:
                rows = np.zeros((len(zones),) + vs[0].rows.shape[1:])
                for v in vs:
                    rows[np.searchsorted(zones, v.zones)] += v.rows
                out[k] = _Rows(zones, rows, vs[0].n)
                continue
        acc = None
        for v in vs:
            if acc is None:
                acc = v.dense() if isinstance(v, _Rows) else v.copy()
            elif isinstance(v, _Rows):
                acc[v.zones] += v.rows
            else:
                acc += v
        out[k] = acc
    return out


REDUCE_FAN_IN = 8   # chunk results added per task of the tree reduction


def _reduce(parts: list, add, *args):
    """A tree of ``add`` over groups of REDUCE_FAN_IN (memory stays flat), at least one level; the
    root's sums are arrays."""
    while True:
        last = len(parts) <= REDUCE_FAN_IN
        parts = [dask.delayed(add)(parts[k:k + REDUCE_FAN_IN], *args, dense=last)
                 for k in range(0, len(parts), REDUCE_FAN_IN)]
        if last:
            return parts[0]


def _stats(stats):
    return {k: fn(*arrs) for k, (fn, arrs) in stats.items()}


def _merge_stats(a, b, merges):
    out = dict(a)
    for k, s in b.items():
        out[k] = merges[k](out[k], s) if k in out else s
    return out


def _write_blocks(writes):
    """Each map's chunk through its writer hook (``outputs.maps.WindowWriter``: the file I/O lives there)."""
    for _name, (a, write, (r0, c0)) in writes.items():
        write(a, r0, c0)


def _add_many(parts, merges, dense=False):
    out = {kind: _add([p[kind] for p in parts], dense) for kind in parts[0] if kind != "__stats__"}
    st = {}
    for p in parts:
        st = _merge_stats(st, p["__stats__"], merges)
    out["__stats__"] = st
    return out


class _Blocks:
    """The blocks of several DataArrays as ``Delayed`` keys, after ONE joint graph optimisation.

    Passing dask-array blocks to ``dask.delayed`` optimises each block's whole graph at every call
    (~90 s of graph building at 10 m), and a block's ``Delayed`` from ``to_delayed`` carries its
    array's whole graph, merged again into every task that uses it (~20 s at 10 m). Here all arrays
    are optimised together once, each block is a bare key, and :meth:`attach` adds the arrays'
    graphs once to the result.

    ``halos``: DataArrays whose blocks come with a 1-px halo of their neighbours (none beyond the
    raster's outer ring), fetched with ``halo=True``.
    """

    def __init__(self, arrays, chunks, halos=()):
        import dask.array as da

        uniq = {}
        for a in arrays:
            if a is not None:
                uniq.setdefault(id(a), a.data.rechunk(chunks))
        for a in halos:
            uniq[("halo", id(a))] = da.overlap.overlap(a.data.rechunk(chunks), depth={0: 1, 1: 1}, boundary="none")
        opt = dask.optimize(*uniq.values())
        self.graphs = [o.__dask_graph__() for o in opt]
        self.keys = {k: o.__dask_keys__() for k, o in zip(uniq, opt)}

    def __call__(self, a, i, j, halo=False):
        from dask.delayed import Delayed

        return Delayed(self.keys[("halo", id(a)) if halo else id(a)][i][j], {})

    def attach(self, result):
        """``result`` (a ``Delayed`` made of these blocks) with the arrays' graphs."""
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        return Delayed(result.key, HighLevelGraph.merge(result.dask, *self.graphs))


def _block_getter(arrays, chunks, halos=()):
    return _Blocks(arrays, chunks, halos)


def zonal_sums(weights: ZoneWeights, grid: Grid, values: dict[str, xr.DataArray] | None = None,
               coded: dict[str, tuple[xr.DataArray, xr.DataArray | None, int]] | None = None):
    """Lazy per-zone sums: ``Σ coverage · value`` for each value, and by class code for ``coded``.

    ``values``: name → per-pixel DataArray (NaN counts as 0). ``coded``: name → (codes, value or
    None for area, number of codes) giving an (n_zones, n_codes) matrix. Multiply by the pixel area
    beforehand when the values are per hectare. Returns a ``dask.delayed`` dict of numpy arrays; each
    chunk's weights are made inside its task (memory O(chunk)).
    """
    values = values or {}
    coded = coded or {}
    arrays = [a.data for a in values.values()] + [c.data for c, _, _ in coded.values()] + \
        [v.data for _, v, _ in coded.values() if v is not None]
    ref = arrays[0]
    blocks = _block_getter(list(values.values()) + [x for c, v, _ in coded.values() for x in (c, v)], ref.chunks)
    parts = []
    for i, j, r0, c0, h, w in _chunks(*ref.chunks):
        part = weights.part(r0, c0, h, w)
        if len(part.zones) == 0:
            continue
        vb = {k: blocks(a, i, j) for k, a in values.items()}
        cb = {k: (blocks(c, i, j), None if v is None else blocks(v, i, j), n) for k, (c, v, n) in coded.items()}
        parts.append(dask.delayed(_part_sums)(weights.n, part, vb, cb))
    if not parts:
        empty = _zeros(weights.n, values, coded)
        return dask.delayed(lambda: empty)()
    return blocks.attach(_reduce(parts, _add))


def zonal_sums_many(weights: dict[str, ZoneWeights], grid: Grid, values: dict[str, xr.DataArray],
                    coded: dict[str, tuple], coded_only: dict[str, dict[str, tuple]] | None = None,
                    block_stats: dict[str, tuple] | None = None,
                    block_writes: dict[str, tuple] | None = None):
    """:func:`zonal_sums` for several zone layers at once: one task per raster chunk serves them all,
    so each chunk's values are computed once and released as soon as that task has run.

    ``coded_only``: extra coded sums for one zone layer only (e.g. by land-cover class for the county).
    ``block_stats``: name → (block function, merge function, DataArrays): the function of each chunk's
    blocks, merged over chunks, gathered in the same pass under the key ``"__stats__"`` (input validation).
    ``block_writes``: name → (DataArray, writer hook ``write(block, r0, c0)``): each chunk is also written into its
    window of an existing GeoTIFF by the same task (outputs cost no second pass and no extra memory).
    Returns a ``dask.delayed`` dict kind → dict name → array.
    """
    coded_only = coded_only or {}
    block_stats = block_stats or {}
    block_writes = block_writes or {}
    ref = next(iter(values.values())).data
    ns = {k: w.n for k, w in weights.items()}
    all_coded = dict(coded)
    for extra in coded_only.values():
        all_coded.update(extra)
    only = {k: set(v) for k, v in coded_only.items()}
    blocks = _block_getter(list(values.values()) + [x for c, v, _ in all_coded.values() for x in (c, v)]
                           + [a for _fn, _m, arrs in block_stats.values() for a in arrs]
                           + [a for a, _w in block_writes.values()], ref.chunks)
    parts = []
    for i, j, r0, c0, h, w in _chunks(*ref.chunks):
        t = {k: wt.part(r0, c0, h, w) for k, wt in weights.items()}
        if not any(len(p.zones) for p in t.values()) and not block_writes:
            continue
        vb = {k: blocks(a, i, j) for k, a in values.items()}
        cb = {k: (blocks(c, i, j), None if v is None else blocks(v, i, j), n) for k, (c, v, n) in all_coded.items()}
        sb = {k: (fn, tuple(blocks(a, i, j) for a in arrs)) for k, (fn, _m, arrs) in block_stats.items()}
        wb = {k: (blocks(a, i, j), write, (r0, c0)) for k, (a, write) in block_writes.items()}
        parts.append(dask.delayed(_block_sums_many)(ns, t, vb, cb, only, sb, wb))
    merges = {k: m for k, (_fn, m, _arrs) in block_stats.items()}
    return blocks.attach(_reduce(parts, _add_many, merges))


def _block_sums_many(ns, parts, values, coded, only, stats=None, writes=None):
    extra_names = set().union(*only.values()) if only else set()
    _write_blocks(writes or {})
    out = {"__stats__": _stats(stats or {})}
    for kind, part in parts.items():
        cod = {k: v for k, v in coded.items() if k not in extra_names or k in only.get(kind, set())}
        if not cod and not values:
            continue
        out[kind] = _part_sums(ns[kind], part, values, cod)
    return out


def zonal_pass(weights: dict[str, ZoneWeights], grid: Grid, inputs: dict[str, xr.DataArray],
               halos: dict[str, xr.DataArray], kernel, only: dict[str, tuple[str, ...]] | None = None,
               block_stats: dict[str, tuple] | None = None, block_writes: dict[str, tuple] | None = None):
    """The valuation's one pass: per raster chunk ONE task evaluates ``kernel`` on the chunk's input
    blocks and sums its results per zone of every layer, runs the input checks and writes the map
    windows, so the per-pixel results never enter the dask graph.

    ``kernel(blocks, halo_blocks, (r0, c0, h, w)) -> (values, coded, maps)`` gets numpy blocks keyed
    like ``inputs`` and ``halos`` (the latter with a 1-px halo where the raster has neighbours) and
    returns numpy ``values`` (name → per-pixel array), ``coded`` (name → (codes, array or None for
    coverage, number of codes)) and ``maps`` (name → per-pixel array, written when named in
    ``block_writes``). ``only``: kind → name prefixes of coded sums made for that zone layer only
    (and for no other). ``block_stats`` and ``block_writes`` as in :func:`zonal_sums_many` (a write's
    DataArray is not used: the kernel's map of that name is written). Returns a ``dask.delayed`` dict
    kind → dict name → array, with the merged statistics under ``"__stats__"``.
    """
    only = only or {}
    block_stats = block_stats or {}
    block_writes = block_writes or {}
    ref = next(iter(inputs.values())).data
    ns = {k: w.n for k, w in weights.items()}
    stat_arrays = [a for _fn, _m, arrs in block_stats.values() for a in arrs]
    blocks = _block_getter(list(inputs.values()) + stat_arrays, ref.chunks, list(halos.values()))
    kern = dask.delayed(kernel, pure=True)   # one key shared by every chunk's task
    parts = []
    for i, j, r0, c0, h, w in _chunks(*ref.chunks):
        t = {k: wt.part(r0, c0, h, w) for k, wt in weights.items()}
        if not any(len(p.zones) for p in t.values()) and not block_writes:
            continue
        ib = {k: blocks(a, i, j) for k, a in inputs.items()}
        hb = {k: blocks(a, i, j, halo=True) for k, a in halos.items()}
        sb = {k: (fn, tuple(blocks(a, i, j) for a in arrs)) for k, (fn, _m, arrs) in block_stats.items()}
        wb = {k: write for k, (_a, write) in block_writes.items()}
        parts.append(dask.delayed(_kernel_sums)(ns, t, kern, ib, hb, (r0, c0, h, w), only, sb, wb))
    merges = {k: m for k, (_fn, m, _arrs) in block_stats.items()}
    return blocks.attach(_reduce(parts, _add_many, merges))


def _kernel_sums(ns, parts, kernel, blocks, halos, window, only, stats, writes):
    r0, c0, _h, _w = window
    values, coded, maps = kernel(blocks, halos, window)
    _write_blocks({k: (maps[k], write, (r0, c0)) for k, write in writes.items()})
    del maps   # written: released before the sums
    out = {"__stats__": _stats(stats)}
    prefixes = tuple(p for ps in only.values() for p in ps)
    flat: dict = {}   # each array as float64 with NaN as 0, once for all zone layers
    for kind, part in parts.items():
        cod = {k: v for k, v in coded.items() if not k.startswith(prefixes) or k.startswith(tuple(only.get(kind, ())))}
        if not cod and not values:
            continue
        out[kind] = _part_sums(ns[kind], part, values, cod, flat)
    return out


def zone_sums_of(weights: ZoneWeights, values: np.ndarray, chunk_px: int | None = None) -> np.ndarray:
    """Σ coverage · value per zone of one in-memory raster on the grid (window by window, O(window))."""
    values = np.asarray(values, dtype=np.float64)
    step = int(chunk_px or weights.grid.chunk_px)
    out = np.zeros(weights.n)
    for _i, _j, r0, c0, h, w in _chunks(*[[step] * (n // step) + ([n % step] if n % step else []) for n in values.shape]):
        cw = weights.chunk(r0, c0, h, w)
        if not cw.empty:
            out += _block_sums(weights.n, cw, {"v": values[r0:r0 + h, c0:c0 + w]}, {})["v"]
    return out


def class_coverage(weights: ZoneWeights, codes: np.ndarray, n_codes: int = 256, chunk_px: int | None = None) -> np.ndarray:
    """Σ coverage of all zones' pixels by class code (e.g. the region's land-cover extent in pixels).

    ``codes`` is the whole grid's code raster; the coverage is made window by window (O(window)).
    """
    codes = np.asarray(codes)
    step = int(chunk_px or weights.grid.chunk_px)
    out = np.zeros(n_codes)
    for _i, _j, r0, c0, h, w in _chunks(*[[step] * (n // step) + ([n % step] if n % step else []) for n in codes.shape]):
        cw = weights.chunk(r0, c0, h, w)
        if cw.empty:
            continue
        c = codes[r0:r0 + h, c0:c0 + w].ravel().astype(np.int64)
        pix, _zone, cov = cw.edge
        for p, wgt in ((cw.inner, None), (pix, cov)):
            k = c[p]
            ok = (k >= 0) & (k < n_codes)
            out += np.bincount(k[ok], weights=None if wgt is None else wgt[ok], minlength=n_codes)[:n_codes]
    return out


def coverage_raster(weights: ZoneWeights, grid: Grid, like: xr.DataArray) -> xr.DataArray:
    """Lazy raster of the covered fraction of each pixel by all zones of ``weights`` (chunk by chunk)."""
    import dask.array as da

    row_chunks, col_chunks = like.data.chunks

    def block(part: ZonePart):
        cw = part.weights()
        out = np.zeros(part.shape[0] * part.shape[1])
        out[cw.inner] = 1.0
        np.add.at(out, cw.edge[0], cw.edge[2])
        return np.minimum(out, 1.0).reshape(part.shape)

    rows = [[None] * len(col_chunks) for _ in row_chunks]
    for i, j, r0, c0, h, w in _chunks(row_chunks, col_chunks):
        rows[i][j] = da.from_delayed(dask.delayed(block)(weights.part(r0, c0, h, w)), (h, w), dtype="float64")
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
