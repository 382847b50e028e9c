"""Pilot generator: determinism, realism against the cited shares, real COGs on the real boundary."""

from __future__ import annotations

import hashlib
import tomllib

import pytest
import rasterio

from eco_value.inputs.schemes import load_scheme
from eco_value.inputs.pilot import generate_pilot, load_settings
from eco_value.resources import data_dir

CLCD = {n: c for c, n in load_scheme("clcd").int_codes().items()}   # the pilot rasters are CLCD-coded


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.tif"))}


def _all_hashes(d):
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_byte_identical_rasters(tmp_path):
    a = generate_pilot("dayi", tmp_path / "a", resolution_m=240, seed=11)
    b = generate_pilot("dayi", tmp_path / "b", resolution_m=240, seed=11)
    c = generate_pilot("dayi", tmp_path / "c", resolution_m=240, seed=12)
    ha, hb, hc = _hashes(a.parent), _hashes(b.parent), _hashes(c.parent)
    assert len(ha) == 15          # 14 layers of the valuation + the t0 land cover for crediting eligibility
    assert ha == hb
    assert ha["lulc_2020.tif"] != hc["lulc_2020.tif"]


@pytest.mark.parametrize("fmt", ["raster", "real"])
def test_same_seed_gives_byte_identical_files_geopackages_included(tmp_path, monkeypatch, fmt):
    """Every file, GeoPackages too (GDAL stamps them with the write time unless OGR_CURRENT_DATE is
    set): the same inputs hash the same, so a regenerated pilot is the same run. The caller's own
    OGR_CURRENT_DATE is left as it was."""
    monkeypatch.delenv("OGR_CURRENT_DATE", raising=False)
    a = generate_pilot("dayi", tmp_path / "a", resolution_m=480, seed=11, fmt=fmt)
    ha = _all_hashes(a.parent)
    monkeypatch.setenv("OGR_CURRENT_DATE", "2031-05-05T00:00:00.000Z")   # a caller's own setting ...
    b = generate_pilot("dayi", tmp_path / "b", resolution_m=480, seed=11, fmt=fmt)
    assert ha == _all_hashes(b.parent)
    assert any(k.endswith(".gpkg") for k in ha)
    import os
    assert os.environ["OGR_CURRENT_DATE"] == "2031-05-05T00:00:00.000Z"   # ... is restored afterwards


def test_land_cover_shares_match_the_cited_targets(pilot_dir):
    target = load_settings()["pilot"]["qionglai"]["shares"]
    with rasterio.open(pilot_dir / "lulc_2020.tif") as src:
        lc = src.read(1)
        nod = src.nodata
    v = lc[lc != nod]
    for name, share in target.items():
        got = float((v == CLCD[name]).mean())
        assert got == pytest.approx(share, abs=0.01), name


def test_rasters_are_tiled_compressed_cogs_with_crs_nodata_and_synthetic_label(pilot_dir):
    for tif in pilot_dir.glob("*.tif"):
        with rasterio.open(tif) as src:
            assert src.crs.to_epsg() == 32648
            assert src.nodata is not None
            assert src.profile["tiled"] and src.compression is not None
            assert src.tags()["SYNTHETIC"] == "yes"
            assert src.overviews(1) or max(src.width, src.height) <= 512
            assert src.res == (90.0, 90.0)


def test_grid_covers_the_real_boundary_and_area_is_right(pilot_dir):
    import geopandas as gpd

    b = gpd.read_file(pilot_dir / "boundary.gpkg")
    with rasterio.open(pilot_dir / "lulc_2020.tif") as src:
        l, bo, r, t = src.bounds
        inside = (src.read(1) != src.nodata).sum() * 90.0 * 90.0 / 1e6
    minx, miny, maxx, maxy = b.total_bounds
    assert l <= minx and bo <= miny and r >= maxx and t >= maxy
    assert b.geometry.area.sum() / 1e6 == pytest.approx(1377, rel=0.01)  # official area 1,377 km2
    assert inside == pytest.approx(1377, rel=0.02)


def test_parcels_tile_the_county_with_unique_ids_and_holders(pilot_dir):
    import geopandas as gpd

    p = gpd.read_file(pilot_dir / "parcels.gpkg")
    b = gpd.read_file(pilot_dir / "boundary.gpkg")
    assert len(p) > 1000
    assert p.parcel_id.is_unique
    assert set(p.holder_type) == {"state", "collective", "household"}
    assert p.geometry.area.sum() == pytest.approx(b.geometry.area.sum(), rel=1e-9)
    assert p.geometry.is_valid.all()


def test_plausibility_inventory_growth_harvest_and_afforestation(pilot_dir):
    """Plausibility of the synthetic inventory, not a known answer: most stands grow, some are felled,
    land is afforested and deforested, and no volume exceeds the validation limit."""
    with rasterio.open(pilot_dir / "volume_2020.tif") as a, rasterio.open(pilot_dir / "volume_2023.tif") as b, \
            rasterio.open(pilot_dir / "lulc_2020.tif") as l1, rasterio.open(pilot_dir / "lulc_2023.tif") as l2:
        v1, v2, c1, c2 = a.read(1), b.read(1), l1.read(1), l2.read(1)
    f = (c1 == CLCD["forest"]) & (c2 == CLCD["forest"]) & (v1 > 0)
    grew = (v2[f] > v1[f]).mean()
    assert grew > 0.9                                   # most stands grow
    assert ((v2[f] == 0) & (v1[f] > 0)).any()           # some were clear-felled
    assert ((c1 != CLCD["forest"]) & (c2 == CLCD["forest"])).any()   # afforestation
    assert ((c1 == CLCD["forest"]) & (c2 == CLCD["impervious"])).any()  # deforestation
    assert v2[v2 != -9999].max() < 2000


def test_catalog_lists_every_layer_with_unit_and_product(pilot_dir):
    with open(pilot_dir / "catalog.toml", "rb") as f:
        cat = tomllib.load(f)
    assert cat["catalog"]["synthetic"] is True
    for key, layer in cat["layers"].items():
        assert layer["unit"] and layer["product"] and (pilot_dir / layer["path"]).exists(), key


def test_boundary_file_ships_with_its_source_note():
    d = data_dir("raster_inputs")
    assert (d / "pilot_boundaries.geojson").exists()
    assert "cnmaps" in (d / "README.md").read_text(encoding="utf-8")


def test_unknown_pilot_is_refused(tmp_path):
    from eco_value.errors import EcoValueError

    with pytest.raises(EcoValueError, match="unknown pilot"):
        generate_pilot("chengdu", tmp_path)


def test_pilot_species_scheme_matches_the_generator_settings():
    """The species scheme (data) and the generator's species table name the same group for each code."""
    from eco_value.rules.ecosystem import species_groups

    scheme = load_scheme("pilot_species")
    groups = species_groups()
    settings = load_settings()["species"]
    assert {int(c): s["key"] for c, s in settings.items()} == {c: n for c, n in scheme.int_codes().items() if c != 0}
    assert scheme.int_codes()[0] == "none"
    assert all(n in groups for n in scheme.int_codes().values() if n != "none")
