"""Each kind of bad input gets its own clear error naming file, layer, problem and fix."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from eco_value.errors import InputError
from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.validate import validate_catalog


def _problems(d):
    return validate_catalog(load_catalog(d / "catalog.toml"))


def _kinds(d):
    return {p.kind: p for p in _problems(d)}


def _rewrite(path, fn, **profile_updates):
    with rasterio.open(path) as src:
        arr = src.read(1)
        prof = src.profile
    arr = fn(arr)
    prof.update(driver="GTiff", **profile_updates)
    path.unlink()
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr, 1)


def _edit_catalog(d, old, new):
    p = d / "catalog.toml"
    s = p.read_text()
    assert old in s
    p.write_text(s.replace(old, new, 1))


def test_clean_pilot_passes(pilot_copy):
    assert _problems(pilot_copy) == []


def test_missing_file(pilot_copy):
    (pilot_copy / "aet.tif").unlink()
    p = _kinds(pilot_copy)["missing-file"]
    assert p.layer == "aet" and p.file.endswith("aet.tif") and "does not exist" in p.problem and p.fix


def test_unreadable_file(pilot_copy):
    (pilot_copy / "fvc.tif").write_bytes(b"this is not a tiff")
    p = _kinds(pilot_copy)["unreadable"]
    assert p.layer == "fvc" and "cannot read" in p.problem


def test_truncated_file(pilot_copy):
    f = pilot_copy / "precip.tif"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    p = _kinds(pilot_copy)["truncated"]
    assert p.layer == "precip" and "truncated" in p.problem


def test_no_crs(pilot_copy):
    _rewrite(pilot_copy / "erodibility.tif", lambda a: a, crs=None)
    p = _kinds(pilot_copy)["no-crs"]
    assert p.layer == "erodibility" and "gdal_edit" in p.fix


def test_crs_mismatch_without_declared_resampling(pilot_copy):
    _rewrite(pilot_copy / "bulk_density.tif", lambda a: a, crs="EPSG:32647")
    p = _kinds(pilot_copy)["crs-mismatch"]
    assert p.layer == "bulk_density" and "EPSG:32647" in p.problem and "resample" in p.fix


def test_grid_that_does_not_overlap_the_region(pilot_copy):
    from affine import Affine

    with rasterio.open(pilot_copy / "fvc.tif") as src:
        t = src.transform
    _rewrite(pilot_copy / "fvc.tif", lambda a: a, transform=Affine(t.a, 0, t.c + 500_000, 0, t.e, t.f))
    kinds = _kinds(pilot_copy)
    assert kinds["no-overlap"].layer == "fvc"


def test_missing_nodata(pilot_copy):
    _rewrite(pilot_copy / "dem.tif", lambda a: a, nodata=None)
    _edit_catalog(pilot_copy, 'nodata = -9999.0\nproduct = "SRTM-like DEM (synthetic)"', 'product = "SRTM-like DEM (synthetic)"')
    p = _kinds(pilot_copy)["no-nodata"]
    assert p.layer == "dem" and "summed" in p.problem


def test_negative_precipitation_is_out_of_range(pilot_copy):
    _rewrite(pilot_copy / "precip.tif", lambda a: np.where(a > 0, a - 5000.0, a).astype(a.dtype))
    p = _kinds(pilot_copy)["out-of-range"]
    assert p.layer == "precip" and "mm" in p.problem and "unit" in p.fix


def test_volume_above_2000_is_out_of_range(pilot_copy):
    _rewrite(pilot_copy / "volume_2023.tif", lambda a: np.where(a > 100, 2500.0, a).astype(a.dtype))
    p = _kinds(pilot_copy)["out-of-range"]
    assert p.layer == "volume@t2" and "2500" in p.problem


def test_unknown_land_cover_code_differs_from_nodata(pilot_copy):
    _rewrite(pilot_copy / "lulc_2023.tif", lambda a: np.where(a == 4, 42, a).astype(a.dtype))
    p = _kinds(pilot_copy)["unknown-class"]
    assert p.layer == "land_cover@t2" and "42" in p.problem and "not nodata" in p.problem


def test_unknown_unit(pilot_copy):
    _edit_catalog(pilot_copy, 'unit = "mm"', 'unit = "inches"')
    p = _kinds(pilot_copy)["unknown-unit"]
    assert "inches" in p.problem


def test_invalid_geometry(pilot_copy):
    import geopandas as gpd
    from shapely.geometry import Polygon

    g = gpd.read_file(pilot_copy / "townships.gpkg")
    x, y = g.geometry.iloc[0].representative_point().coords[0]
    bowtie = Polygon([(x, y), (x + 100, y + 100), (x + 100, y), (x, y + 100)])
    g.loc[0, "geometry"] = bowtie
    g.to_file(pilot_copy / "townships.gpkg", layer="townships", driver="GPKG")
    p = _kinds(pilot_copy)["invalid-geometry"]
    assert p.layer == "townships" and "Self-intersection" in p.problem and "make_valid" in p.fix


def test_duplicate_parcel_ids(pilot_copy):
    import geopandas as gpd

    g = gpd.read_file(pilot_copy / "parcels.gpkg")
    g.loc[1, "parcel_id"] = g.loc[0, "parcel_id"]
    g.to_file(pilot_copy / "parcels.gpkg", layer="parcels", driver="GPKG")
    p = _kinds(pilot_copy)["duplicate-id"]
    assert p.layer == "parcels" and g.loc[0, "parcel_id"] in p.problem


def test_all_problems_are_reported_together(pilot_copy):
    (pilot_copy / "aet.tif").unlink()
    _edit_catalog(pilot_copy, 'unit = "mm"', 'unit = "inches"')
    (pilot_copy / "fvc.tif").write_bytes(b"junk")
    kinds = {p.kind for p in _problems(pilot_copy)}
    assert {"missing-file", "unknown-unit", "unreadable"} <= kinds


def test_declared_resampling_aligns_a_layer_on_another_grid(pilot_copy):
    """A layer at another resolution is accepted when the catalog declares how to resample it."""
    from rasterio.enums import Resampling
    from eco_value.inputs.readers import open_layers

    src_path = pilot_copy / "precip.tif"
    with rasterio.open(src_path) as src:
        data = src.read(1, out_shape=(src.height // 2, src.width // 2), resampling=Resampling.nearest)
        prof = src.profile
        t = src.transform
    prof.update(driver="GTiff", width=data.shape[1], height=data.shape[0], transform=t * t.scale(2, 2))
    src_path.unlink()
    with rasterio.open(src_path, "w", **prof) as dst:
        dst.write(data, 1)
    assert "grid-mismatch" in _kinds(pilot_copy)
    _edit_catalog(pilot_copy, 'path = "precip.tif"', 'path = "precip.tif"\nresample = "bilinear"')
    assert _problems(pilot_copy) == []
    cat = load_catalog(pilot_copy / "catalog.toml")
    layers, grid = open_layers(cat, keys=["precip", "land_cover@t1"])
    assert layers["precip"].shape == layers["land_cover@t1"].shape == grid.shape


def test_missing_catalog_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_catalog(tmp_path / "nope.toml")
