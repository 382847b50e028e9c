"""Zone weights made chunk by chunk (issue 17 item 3): exact fractions at edges, ids inside.

Known answers by hand on a tiny grid, and equality with whole-raster exactextract coverage (the
previous method, kept here as the reference) for irregular polygons crossing chunk borders.
"""

from __future__ import annotations

import dask
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine

from eco_value.accounts.zonal import class_coverage, coverage_raster, zonal_sums, zonal_sums_many, zone_weights
from eco_value.grid import Grid

CRS = "EPSG:32648"
RES = 10.0
X0, Y0 = 500_000.0, 3_400_000.0   # top-left corner


def _grid(h, w, chunk):
    return Grid(CRS, Affine(RES, 0.0, X0, 0.0, -RES, Y0), w, h, chunk)


def _da(a, chunk):
    import dask.array as da

    return xr.DataArray(da.from_array(a, chunks=(chunk, chunk)), dims=("y", "x"))


def _box(c0, r0, c1, r1):
    """A box in pixel units (columns c0..c1, rows r0..r1 from the top-left corner)."""
    return shapely.box(X0 + c0 * RES, Y0 - r1 * RES, X0 + c1 * RES, Y0 - r0 * RES)


def _sums(w, grid, values, coded=None):
    return dask.compute(zonal_sums(w, grid, values, coded))[0]


def test_pixel_shared_by_two_parcels_counts_in_each_by_its_share():
    # 4 × 6 px, chunks of 2 px: parcel A = columns 0..2.5, parcel B = 2.5..6 (all rows);
    # column 2 is split half/half, and both parcels cross chunk borders
    grid = _grid(4, 6, 2)
    v = np.arange(24, dtype=np.float64).reshape(4, 6)
    gdf = gpd.GeoDataFrame({"pid": ["A", "B"]}, geometry=[_box(0, 0, 2.5, 4), _box(2.5, 0, 6, 4)], crs=CRS)
    w = zone_weights(gdf, "pid", grid)
    out = _sums(w, grid, {"v": _da(v, 2)})
    a = v[:, :2].sum() + 0.5 * v[:, 2].sum()          # by hand: 0+1+6+7+12+13+18+19 + 0.5·(2+8+14+20) = 98
    b = v[:, 3:].sum() + 0.5 * v[:, 2].sum()
    assert a == 98.0
    assert out["v"].tolist() == [a, b]
    assert out["v"].sum() == v.sum()                   # parcels tiling the grid sum to its total

    # area by class code: column 2 has code 1, the rest code 0
    codes = np.zeros((4, 6), np.int64)
    codes[:, 2] = 1
    out = _sums(w, grid, {"v": _da(v, 2)}, {"n": (_da(codes, 2), None, 2)})
    assert out["n"].tolist() == [[8.0, 2.0], [12.0, 2.0]]


def test_overlapping_zones_each_count_a_wholly_covered_pixel():
    grid = _grid(4, 4, 2)
    v = np.ones((4, 4))
    v[1, 1] = np.nan                                   # NaN counts as 0
    gdf = gpd.GeoDataFrame({"pid": ["big", "small"]}, geometry=[_box(0, 0, 4, 4), _box(1, 1, 3, 3)], crs=CRS)
    out = _sums(zone_weights(gdf, "pid", grid), grid, {"v": _da(v, 2)})
    assert out["v"].tolist() == [15.0, 3.0]


def _reference(gdf, grid, path, values: dict, codes=None, n_codes=0):
    """The previous method: whole-raster exactextract (cell_id, coverage) triplets, one bincount."""
    from exactextract import exact_extract

    df = exact_extract(str(path), gdf[["pid", "geometry"]], ["cell_id", "coverage"], include_cols=["pid"], output="pandas")
    lens = [len(c) for c in df["cell_id"]]
    zone = np.repeat(np.arange(len(df)), lens)
    pix = np.concatenate([np.asarray(c, np.int64) for c in df["cell_id"]])
    cov = np.concatenate([np.asarray(c, np.float64) for c in df["coverage"]])
    out = {k: np.bincount(zone, weights=cov * np.nan_to_num(a.ravel()[pix]), minlength=len(df)) for k, a in values.items()}
    if codes is not None:
        out["codes"] = np.bincount(zone * n_codes + codes.ravel()[pix], weights=cov, minlength=len(df) * n_codes).reshape(-1, n_codes)
    return out, np.bincount(codes.ravel()[pix], weights=cov, minlength=n_codes) if codes is not None else None


@pytest.mark.parametrize("chunk", [7, 16, 64])
def test_equal_to_whole_raster_exact_coverage(tmp_path, chunk):
    h, w = 60, 50
    grid = _grid(h, w, chunk)
    rng = np.random.default_rng(3)
    vals = rng.uniform(-5.0, 10.0, (h, w))
    vals[rng.random((h, w)) < 0.05] = np.nan
    codes = rng.integers(0, 4, (h, w))
    # irregular parcels: Voronoi cells of random points clipped to a disc, plus one parcel with a hole
    region = shapely.Point(X0 + 250.0, Y0 - 300.0).buffer(240.0)
    pts = shapely.multipoints(np.column_stack([X0 + rng.uniform(0, 500, 25), Y0 - rng.uniform(0, 600, 25)]))
    cells = [shapely.intersection(c, region) for c in shapely.get_parts(shapely.voronoi_polygons(pts))]
    cells = [c for c in cells if c.area > 0]
    cells.append(region.difference(region.buffer(-15.0)).buffer(0))   # a ring (a hole inside) overlapping the cells
    gdf = gpd.GeoDataFrame({"pid": [f"p{i}" for i in range(len(cells))]}, geometry=cells, crs=CRS)
    path = tmp_path / "t.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=CRS,
                       transform=grid.transform) as dst:
        dst.write(np.zeros((h, w), np.uint8), 1)
    ref, ref_cls = _reference(gdf, grid, path, {"v": vals}, codes, 4)

    zw = zone_weights(gdf, "pid", grid, str(path))
    out = _sums(zw, grid, {"v": _da(vals, chunk)}, {"codes": (_da(codes, chunk), None, 4)})
    np.testing.assert_allclose(out["v"], ref["v"], rtol=1e-12, atol=1e-12 * np.abs(ref["v"]).max())
    np.testing.assert_allclose(out["codes"], ref["codes"], rtol=1e-12, atol=1e-12)
    assert abs(out["v"].sum() - ref["v"].sum()) < 1e-9

    # the same through the pipeline's many-layer pass, with the region as a second zone layer
    reg = gpd.GeoDataFrame({"pid": ["r"]}, geometry=[region], crs=CRS)
    both = dask.compute(zonal_sums_many({"p": zw, "r": zone_weights(reg, "pid", grid)}, grid, {"v": _da(vals, chunk)}, {}))[0]
    np.testing.assert_allclose(both["p"]["v"], ref["v"], rtol=1e-12, atol=1e-12 * np.abs(ref["v"]).max())
    assert both["r"]["v"][0] == pytest.approx(ref["v"][:-1].sum(), rel=1e-9)   # the cells tile the disc

    np.testing.assert_allclose(class_coverage(zw, codes, 4, chunk_px=chunk), ref_cls, rtol=1e-12)
    cov = coverage_raster(zone_weights(gdf.iloc[:-1], "pid", grid), grid, _da(vals, chunk)).values
    assert cov.sum() == pytest.approx(sum(c.area for c in cells[:-1]) / RES**2, rel=1e-8)   # exactextract vs GEOS area
    assert cov.max() <= 1.0 and cov.min() == 0.0


def test_weights_hold_no_pixel_arrays():
    """Memory O(zones): the weights of a layer keep polygons only, whatever the grid's size."""
    grid = _grid(100_000, 100_000, 512)   # 10 Gpx: nothing of this size may be allocated
    gdf = gpd.GeoDataFrame({"pid": ["a"]}, geometry=[_box(0, 0, 100_000, 100_000)], crs=CRS)
    zw = zone_weights(gdf, "pid", grid)
    cw = zw.chunk(512, 1024, 512, 512)
    assert len(cw.inner) == 512 * 512 and len(cw.edge[0]) == 0 and set(cw.inner_zone) == {0}


def test_sums_by_runs_equal_sums_by_pixel():
    # the chunk's keyed sums go by runs of equal keys when these are long (zones, patches), else
    # pixel by pixel; keys at or beyond the number of slots (outside every zone) are dropped
    from eco_value.accounts.zonal import _Keyed

    rng = np.random.default_rng(3)
    runs = np.repeat(np.array([0, 2, 5, 2, 0, 6, 1]), [40, 13, 7, 30, 1, 20, 9])   # 6: outside (5 slots + 1)
    noisy = rng.integers(0, 7, len(runs))                                          # runs of ~1 px
    a = rng.normal(size=len(runs)) * 1e3
    for keys, by_runs in ((runs, True), (noisy, False)):
        k = _Keyed(keys.astype(np.int64), 6)
        assert (k.starts is not None) == by_runs
        expected = np.array([a[keys == z].sum() for z in range(6)])
        np.testing.assert_allclose(k.sum(a), expected, rtol=1e-13, atol=1e-10)
        assert k.sum(None).tolist() == [float((keys == z).sum()) for z in range(6)]   # pixel counts, exact
    assert _Keyed(runs.astype(np.int64), 6).sum(a)[5] == a[53:60].sum()   # one run: its sum


def test_a_chunks_sums_hold_the_rows_of_its_zones_only():
    # 400 parcels of 4 × 4 px on an 80 × 80 grid, chunks of 8 px: a chunk meets 4 parcels (+ the
    # neighbours whose boxes touch its border), and its result holds those rows, not 400
    from eco_value.accounts.zonal import _add, _part_sums, _Rows

    grid = _grid(80, 80, 8)
    boxes = [_box(c, r, c + 4, r + 4) for r in range(0, 80, 4) for c in range(0, 80, 4)]
    gdf = gpd.GeoDataFrame({"pid": [str(i) for i in range(400)]}, geometry=boxes, crs=CRS)
    zw = zone_weights(gdf, "pid", grid)
    v = np.arange(64, dtype=np.float64).reshape(8, 8)
    codes = np.zeros((8, 8), np.int64)
    part = _part_sums(zw.n, zw.part(8, 16, 8, 8), {"v": v}, {"c": (codes, None, 2)})
    assert isinstance(part["v"], _Rows) and len(part["v"].zones) <= 16 and part["c"].rows.shape[1] == 2
    two = _add([part, _part_sums(zw.n, zw.part(8, 24, 8, 8), {"v": v}, {"c": (codes, None, 2)})])
    assert isinstance(two["v"], _Rows) and len(two["v"].zones) <= 32          # a branch of the tree: still rows
    assert two["v"].dense().sum() == 2 * v.sum()
    dense = _add([part], dense=True)                                          # the root: arrays
    first = 2 * 20 + 4                                   # parcel at rows 8..11, columns 16..19
    assert dense["v"][first] == v[:4, :4].sum() and dense["v"].sum() == v.sum() and dense["v"].shape == (400,)
    assert dense["c"][first].tolist() == [16.0, 0.0] and dense["c"].shape == (400, 2)
