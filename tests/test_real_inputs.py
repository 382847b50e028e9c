"""Readers of a county bureau's real files (issue 13): fixtures written in each real schema.

Every fixture is tiny and written here (GBK shapefiles with .cpg, DLTB GeoPackage, WorldCover codes,
MOD16A2-like 8-day stack, CHIRPS-like daily NetCDF); answers are worked out by hand.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from shapely.geometry import box

from eco_value.errors import InputError
from eco_value.grid import Grid
from eco_value.inputs import inventory as inv
from eco_value.inputs.schemes import load_scheme
from eco_value.rules.ecosystem import ecosystem_types

CRS_GK = "EPSG:4543"  # CGCS2000 / 3-degree Gauss-Kruger CM 102E, the bureau's usual CRS
X0, Y0 = 500_000.0, 3_400_000.0
TYPES = ecosystem_types()

NATIONAL = ["SHENG", "XIAN", "XIANG", "CUN", "LIN_BAN", "XIAO_BAN", "DI_LEI", "QI_YUAN", "YOU_SHI_SZ",
            "LING_ZU", "PINGJUN_NL", "YU_BI_DU", "MEI_GQ_XJ", "HUO_LM_XJ", "LIN_ZHONG", "MIAN_JI"]


def grid4() -> Grid:
    """4 × 4 pixels of 100 m, top-left at (X0, Y0 + 400)."""
    return Grid(crs=CRS_GK, transform=Affine(100.0, 0, X0, 0, -100.0, Y0 + 400), width=4, height=4, chunk_px=2)


def stands() -> gpd.GeoDataFrame:
    """Three 小班: A (杉木 乔木林, top-left 2×2 px), B (竹林, right half), C (灌木, 140 m square at the
    bottom-left, which holds only the centre of pixel row 3, col 0)."""
    rows = [
        # SHENG XIAN XIANG CUN LIN_BAN XIAO_BAN DI_LEI QI_YUAN YOU_SHI_SZ LING_ZU PINGJUN_NL YU_BI_DU MEI_GQ_XJ HUO_LM_XJ LIN_ZHONG MIAN_JI
        ["51", "510183", "101", "201", "0012", "000001", "030100", "21", "310", "中龄林", 18.0, 0.7, 120.5, 482.0, "233", 4.0],
        ["51", "510183", "101", "201", "0012", "000002", "030200", "11", "710", "成熟林", 0.0, 0.8, 0.0, 0.0, "251", 8.0],
        ["51", "510183", "101", "202", "0013", "000001", "030302", "11", "", "", 0.0, 0.0, 0.0, 0.0, "", 1.96],
    ]
    df = pd.DataFrame(rows, columns=NATIONAL)
    df["XIANG_MC"] = ["南宝山镇", "南宝山镇", "天台山镇"]
    geoms = [box(X0, Y0 + 200, X0 + 200, Y0 + 400), box(X0 + 200, Y0, X0 + 400, Y0 + 400), box(X0, Y0, X0 + 140, Y0 + 140)]
    return gpd.GeoDataFrame(df, geometry=geoms, crs=CRS_GK)


def write_shp(gdf: gpd.GeoDataFrame, path: Path, cpg: str | None = "936", encoding: str = "gbk") -> Path:
    gdf.to_file(path, encoding=encoding, engine="pyogrio")
    c = path.with_suffix(".cpg")
    if cpg is None:
        c.unlink(missing_ok=True)
    else:
        c.write_text(cpg)
    return path


def write_species(path: Path) -> Path:
    path.write_bytes("code,group,name_zh\n310,cunninghamia,杉木\n710,bamboo,毛竹\n".encode("gbk"))
    return path


# --- schemes ---------------------------------------------------------------------------------------

def test_every_scheme_maps_to_ecosystem_types_and_cites_its_source():
    for name in ("worldcover", "gbt21010-2017", "dilei-3digit", "dilei-6digit"):
        s = load_scheme(name)
        assert s.source and s.product and all(t in TYPES for t in s.codes.values())
    g = load_scheme("gbt21010-2017")
    assert [g.codes[c] for c in ("0201", "0202", "0204", "0301", "0302", "0305", "0307")] == \
        ["orchard", "tea_garden", "orchard", "forest", "bamboo_forest", "shrub", "sparse_forest"]
    assert {g.codes[c] for c in ("0304", "0306", "0402", "1108")} == {"marsh"}
    assert load_scheme("worldcover").nodata_codes == ("0",)
    # a 6-digit DI_LEI stored as a number still finds its code
    assert load_scheme("dilei-6digit").types_of([30100, "030200"], file="f", field_name="DI_LEI") == \
        ["forest", "bamboo_forest"]


# --- inventory -------------------------------------------------------------------------------------

def test_gbk_shapefile_with_cpg_gives_typed_stands(tmp_path):
    shp = write_shp(stands(), tmp_path / "xiaoban.shp")
    p = inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    assert p.attrs["encoding"] == "gbk"
    assert list(p["xiaoban_id"]) == ["51510183101201001200000" + "1", "515101831012010012000002",
                                     "515101831012020013000001"]
    assert list(p["ecosystem_type"]) == ["forest", "bamboo_forest", "shrub"]
    assert list(p["ecosystem_type_id"]) == [TYPES["forest"].id, TYPES["bamboo_forest"].id, TYPES["shrub"].id]
    assert list(p["species_group"]) == ["cunninghamia", "bamboo", ""]
    assert list(p["origin"]) == ["planted", "natural", "natural"]
    assert list(p["age_class"][:2]) == [2, 4] and pd.isna(p["age_class"][2])  # 中龄林, 成熟林, empty
    assert list(p["economic_forest"]) == [False, True, False]
    assert p["volume_m3_ha"].tolist() == [120.5, 0.0, 0.0]
    assert np.allclose(p["area_ha"], [4.0, 8.0, 1.96], rtol=0, atol=1e-12)
    assert np.allclose(p["geom_area_ha"], [4.0, 8.0, 1.96], rtol=0, atol=1e-9)


def test_shapefile_without_cpg_is_detected_as_gbk(tmp_path):
    shp = write_shp(stands(), tmp_path / "xiaoban.shp", cpg=None)
    p = inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    assert p.attrs["encoding"] == "gbk"
    assert list(p["age_class"][:2]) == [2, 4]  # 中龄林, 成熟林 decoded


def test_gbk_bytes_behind_a_latin_cpg_are_refused_as_mojibake(tmp_path):
    shp = write_shp(stands(), tmp_path / "xiaoban.shp", cpg="1252")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    msg = str(e.value)
    assert e.value.kinds() == {"garbled-text"}
    assert "xiaoban.shp" in msg and "'LING_ZU'" in msg and "XIANG_MC" in msg
    assert "'ÄÏ±¦É½Õò' which reads '南宝山镇' as GBK" in msg
    assert "the DBF's text is GBK but was decoded as cp1252: write 936 into the .cpg beside the .shp" in msg


def test_text_garbled_before_storage_is_refused(tmp_path):
    g = stands()
    g["XIANG_MC"] = [s.encode("gbk").decode("latin-1") for s in g["XIANG_MC"]]  # what a bad export stores
    g.to_file(tmp_path / "xiaoban.gpkg", layer="xiaoban")
    with pytest.raises(InputError) as e:
        inv.read_inventory(tmp_path / "xiaoban.gpkg", species=write_species(tmp_path / "species.csv"))
    msg = str(e.value)
    assert "gpkg (layer 'XIANG_MC')" in msg and "e.g. 'ÄÏ±¦É½Õò' which reads '南宝山镇'" in msg
    assert "garbled before this file was written" in msg


def test_utf8_cpg_on_gbk_bytes_is_an_encoding_error(tmp_path):
    shp = write_shp(stands(), tmp_path / "xiaoban.shp", cpg="UTF-8")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    msg = str(e.value)
    assert e.value.kinds() == {"bad-encoding"}
    assert "not valid utf-8 (chosen by the .cpg file (xiaoban.cpg: 'UTF-8'))" in msg
    assert "the bytes decode as GBK" in msg and "write 936 into the .cpg" in msg


def test_unmapped_codes_and_missing_fields_are_refused_with_counts(tmp_path):
    g = stands()
    g.loc[0, "DI_LEI"] = "039999"
    g.loc[1, "DI_LEI"] = "039999"
    g.loc[2, "YOU_SHI_SZ"] = "999"
    shp = write_shp(g, tmp_path / "xiaoban.shp")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    msg = str(e.value)
    assert "'039999' (2×)" in msg and "class scheme 'dilei-6digit'" in msg
    assert "species codes the crosswalk does not map: '999' (1×)" in msg

    shp2 = write_shp(stands().drop(columns=["MEI_GQ_XJ", "LING_ZU"]), tmp_path / "b.shp")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp2, species=write_species(tmp_path / "species.csv"))
    assert e.value.kinds() == {"missing-field"}
    assert "2 mapped field(s) not in the data: age_class -> LING_ZU, volume_per_ha -> MEI_GQ_XJ" in str(e.value)


def test_unknown_species_group_in_the_crosswalk_is_refused(tmp_path):
    shp = write_shp(stands(), tmp_path / "xiaoban.shp")
    bad = tmp_path / "species.csv"
    bad.write_text("code,group\n310,chinese_fir\n710,bamboo\n")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=bad)
    assert "groups not in rule set 'cn2011-mee2020': 'chinese_fir' (1 code(s))" in str(e.value)


def test_duplicate_id_and_area_in_mu_declared_as_ha_are_refused(tmp_path):
    g = stands()
    g.loc[1, ["CUN", "LIN_BAN", "XIAO_BAN"]] = ["201", "12", "1"]  # same id as row 0 once padded
    shp = write_shp(g, tmp_path / "dup.shp")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    assert "1 小班 id(s) occur more than once (sheng(2)+xian(6)+xiang(3)+cun(3)+lin_ban(4)+xiao_ban(6)): " \
           "515101831012010012000001 (2×)" in str(e.value)

    g = stands()
    g["MIAN_JI"] = g["MIAN_JI"] * 15  # 亩
    shp = write_shp(g, tmp_path / "mu.shp")
    with pytest.raises(InputError) as e:
        inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"))
    msg = str(e.value)
    assert e.value.kinds() == {"area-mismatch"}
    assert "3 小班 differ from their polygon's area by more than 5%" in msg
    assert "as if MIAN_JI were in 'mu' — set [area] unit = \"mu\"" in msg
    fm = inv.load_fieldmap()
    fm.area_unit = "mu"
    p = inv.read_inventory(shp, species=write_species(tmp_path / "species.csv"), fieldmap=fm)
    assert np.allclose(p["area_ha"], [4.0, 8.0, 1.96], rtol=1e-12)


def test_stands_rasterised_on_a_4x4_grid_centre_of_pixel(tmp_path):
    p = inv.read_inventory(write_shp(stands(), tmp_path / "x.shp"), species=write_species(tmp_path / "s.csv"))
    r = inv.rasterize_stands(p, grid4(), ["ecosystem_type_id", "volume_m3_ha"])
    f, b, s = TYPES["forest"].id, TYPES["bamboo_forest"].id, TYPES["shrub"].id
    assert r["ecosystem_type_id"].data.chunksize == (2, 2)  # lazy, per chunk
    assert r["ecosystem_type_id"].values.tolist() == [[f, f, b, b], [f, f, b, b], [0, 0, b, b], [s, 0, b, b]]
    v = r["volume_m3_ha"].values
    assert np.array_equal(v[:2, :2], np.full((2, 2), 120.5))
    assert np.isnan(v[2:, :2]).tolist() == [[True, True], [False, True]]  # C is 0 m3/ha; the rest outside
    assert np.nansum(v) == pytest.approx(4 * 120.5, abs=1e-9)


def snapshot(tmp_path: Path, name: str, gdf: gpd.GeoDataFrame, fieldmap="inventory-national"):
    return inv.read_inventory(write_shp(gdf, tmp_path / f"{name}.shp"), species=write_species(tmp_path / "s.csv"),
                              fieldmap=fieldmap, snapshot=name)


def test_two_snapshots_give_afforestation_harvest_and_deforestation(tmp_path):
    t1 = stands()
    t2 = stands()
    t2["BHYY"] = ["20", "", ""]  # A harvested (recorded), B unchanged, C shrub -> planted forest (no reason)
    t2.loc[0, ["DI_LEI", "MEI_GQ_XJ", "HUO_LM_XJ"]] = ["030405", 0.0, 0.0]
    t2.loc[2, ["DI_LEI", "YOU_SHI_SZ"]] = ["030402", "310"]
    new = stands().iloc[[0]].copy()
    new.loc[:, ["XIAO_BAN", "DI_LEI", "MIAN_JI"]] = ["000009", "030100", 4.0]
    new["geometry"] = [box(X0 - 200, Y0, X0, Y0 + 200)]
    new["BHYY"] = ["50"]
    t1b = pd.concat([t1, new.drop(columns="BHYY")], ignore_index=True)
    t2b = pd.concat([t2, new], ignore_index=True)
    t2b.loc[3, "DI_LEI"] = "030100"  # a recorded deforestation that the map still shows as forest
    c = inv.change_table(snapshot(tmp_path, "t1", gpd.GeoDataFrame(t1b, crs=CRS_GK)),
                         snapshot(tmp_path, "t2", gpd.GeoDataFrame(t2b, crs=CRS_GK)))
    assert list(c["event"]) == ["harvest", "unchanged", "deforestation", "afforestation"]
    assert list(c["event_source"]) == ["change_reason", "derived", "change_reason", "derived"]
    assert list(c["agrees"]) == [True, True, False, True]
    assert c["volume_change_m3"].iloc[0] == pytest.approx(-120.5 * 4.0, abs=1e-9)


def test_snapshots_with_different_id_schemes_are_refused(tmp_path):
    t1 = snapshot(tmp_path, "t1", stands())
    fm = inv.load_fieldmap()
    fm.id_parts, fm.id_widths = ["xian", "lin_ban", "xiao_ban"], [6, 4, 6]
    t2 = snapshot(tmp_path, "t2", stands(), fieldmap=fm)
    with pytest.raises(InputError) as e:
        inv.change_table(t1, t2)
    msg = str(e.value)
    assert e.value.kinds() == {"id-scheme-mismatch"}
    assert "t1: sheng(2)+xian(6)+xiang(3)+cun(3)+lin_ban(4)+xiao_ban(6), id lengths {24: 3}" in msg
    assert "t2: xian(6)+lin_ban(4)+xiao_ban(6), id lengths {16: 3}; 0 id(s) shared" in msg


# --- land-use survey (DLTB) -------------------------------------------------------------------------

def write_dltb(path: Path) -> Path:
    """Three 图斑: 茶园 (left half, village ...001), 乔木林地 (top-right), 果园 (bottom-right, village ...002);
    TBDLMJ = TBMJ minus a 田坎 deduction, so the two differ."""
    geoms = [box(X0, Y0, X0 + 200, Y0 + 400), box(X0 + 200, Y0 + 200, X0 + 400, Y0 + 400),
             box(X0 + 200, Y0, X0 + 400, Y0 + 200)]
    tbmj = [g.area for g in geoms]
    gdf = gpd.GeoDataFrame({
        "BSM": ["1", "2", "3"], "TBBH": ["1", "2", "3"], "DLBM": ["0202", "0301", "0201"],
        "DLMC": ["茶园", "乔木林地", "果园"], "QSXZ": ["30", "30", "30"],
        "ZLDWDM": ["5101831012010000000", "5101831012010000000", "5101831012020000000"],
        "TBMJ": tbmj, "KCDLBM": ["1203", "", "1203"], "TKXS": [0.08, 0.0, 0.05],
        "TBDLMJ": [tbmj[0] * 0.92, tbmj[1], tbmj[2] * 0.95],
    }, geometry=geoms, crs=CRS_GK)
    gdf.to_file(path, layer="DLTB")
    return path


def test_dltb_gives_land_cover_village_zones_and_net_areas(tmp_path):
    from eco_value.inputs import landuse

    d = landuse.read_dltb(write_dltb(tmp_path / "sandiao.gpkg"), county="510183")
    assert list(d["ecosystem_type"]) == ["tea_garden", "forest", "orchard"]
    assert np.allclose(d["area_ha"], [8.0 * 0.92, 4.0, 4.0 * 0.95], rtol=0, atol=1e-12)  # TBDLMJ, not TBMJ
    lc = landuse.land_cover(d, grid4())
    t, f, o = TYPES["tea_garden"].id, TYPES["forest"].id, TYPES["orchard"].id
    assert lc.dtype == np.uint8 and lc.values.tolist() == [[t, t, f, f], [t, t, f, f], [t, t, o, o], [t, t, o, o]]
    zones, table = landuse.village_zones(d, grid4())
    assert table["village_code"].tolist() == ["510183101201", "510183101202"]
    assert np.allclose(table["area_ha"], [8 * 0.92 + 4.0, 4 * 0.95], rtol=0, atol=1e-12)
    assert zones.values.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 2, 2], [1, 1, 2, 2]]
    a = landuse.areas_by_type(d).set_index(["village_code", "ecosystem_type"])["area_ha"]
    assert a[("510183101201", "tea_garden")] == pytest.approx(7.36, abs=1e-12)


def test_dltb_rasterisation_error_is_within_the_stated_bound(tmp_path):
    """A triangle not aligned with the grid: raster area vs polygon area within Σ(|dx|+|dy|)/res + 1 px."""
    from shapely.geometry import Polygon

    from eco_value.inputs import landuse

    tri = Polygon([(X0 + 13, Y0 + 7), (X0 + 391, Y0 + 55), (X0 + 170, Y0 + 377)])
    gdf = gpd.GeoDataFrame({"DLBM": ["0301"], "ZLDWDM": ["5101831012010000000"], "TBMJ": [tri.area],
                            "TBDLMJ": [tri.area]}, geometry=[tri], crs=CRS_GK)
    gdf.to_file(tmp_path / "t.gpkg", layer="DLTB")
    g = Grid(crs=CRS_GK, transform=Affine(10.0, 0, X0, 0, -10.0, Y0 + 400), width=40, height=40, chunk_px=16)
    lc = landuse.land_cover(landuse.read_dltb(tmp_path / "t.gpkg"), g).values
    raster_m2 = float((lc == TYPES["forest"].id).sum()) * g.pixel_area_m2
    xy = np.array(tri.exterior.coords)
    bound_px = float(np.sum((np.abs(np.diff(xy[:, 0])) + np.abs(np.diff(xy[:, 1]))) / g.res_m + 1))
    assert abs(raster_m2 - tri.area) <= bound_px * g.pixel_area_m2
    assert abs(raster_m2 - tri.area) / tri.area < 0.05


def test_dltb_unmapped_dlbm_missing_tbdlmj_and_other_county_are_refused(tmp_path):
    from eco_value.inputs import landuse

    d = gpd.read_file(write_dltb(tmp_path / "a.gpkg"), layer="DLTB")
    d.loc[0, "DLBM"] = "0299"
    d.loc[2, "ZLDWDM"] = "5101290012020000000"
    d.to_file(tmp_path / "b.gpkg", layer="DLTB")
    with pytest.raises(InputError) as e:
        landuse.read_dltb(tmp_path / "b.gpkg", county="510183")
    assert "'0299' (1×)" in str(e.value) and "class scheme 'gbt21010-2017'" in str(e.value)
    d.loc[0, "DLBM"] = "0202"
    d.to_file(tmp_path / "c.gpkg", layer="DLTB")
    with pytest.raises(InputError) as e:
        landuse.read_dltb(tmp_path / "c.gpkg", county="510183")
    assert "1 图斑 lie in another county than 510183: prefixes '510129' (1×)" in str(e.value)
    d.drop(columns="TBDLMJ").to_file(tmp_path / "e.gpkg", layer="DLTB")
    with pytest.raises(InputError) as e:
        landuse.read_dltb(tmp_path / "e.gpkg")
    assert "1 mapped field(s) not in the data: net_area -> TBDLMJ" in str(e.value)


# --- tenure ---------------------------------------------------------------------------------------

def test_tenure_records_join_by_lb_xb_and_unmatched_are_reported(tmp_path):
    from eco_value.inputs import tenure

    p = inv.read_inventory(write_shp(stands(), tmp_path / "x.shp"), species=write_species(tmp_path / "s.csv"))
    csv = tmp_path / "linquan.csv"
    csv.write_bytes((
        "BDCQZH,LDSYQSSJ,LDSYJSSJ,SLLMSYQR,SYQMJ,LB,XB\n"
        "川(2019)邛崃市不动产权第0000101号,2009-01-01,2058-12-31,张三,60,12,1\n"
        "川(2019)邛崃市不动产权第0000102号,20090101,2058年12月31日,李四,120,0012,000002\n"
        "川(2019)邛崃市不动产权第0000103号,2009/1/1,2058-12-31,王五,15,99,1\n").encode("gbk"))
    rec = tenure.read_tenure(csv)
    assert rec["area_ha"].tolist() == pytest.approx([4.0, 8.0, 1.0], abs=1e-12)  # 亩 / 15
    j = tenure.join_tenure(p, rec)
    assert j.records["xiaoban_id"].tolist() == ["515101831012010012000001", "515101831012010012000002"]
    assert j.records["end"].tolist()[1].isoformat() == "2058-12-31"
    assert j.unmatched["certificate"].tolist() == ["川(2019)邛崃市不动产权第0000103号"]
    assert j.unmatched["reason"].tolist() == ["no 小班 with LB/XB 0099/000001"]
    a = tenure.attach(p, j)
    assert a["holders"].tolist()[:2] == ["张三", "李四"] and pd.isna(a["holders"].iloc[2])

    bad = tmp_path / "bad.csv"
    bad.write_text("BDCQZH,LDSYQSSJ,LDSYJSSJ,SLLMSYQR,SYQMJ,LB,XB\nA1,2009-01-01,soon,x,1,12,1\n")
    with pytest.raises(InputError) as e:
        tenure.read_tenure(bad)
    assert "dates that cannot be read: 'soon' (1×)" in str(e.value)


# --- public raster products ---------------------------------------------------------------------------

def write_tif(path: Path, arr: np.ndarray, transform: Affine, crs: str, nodata=None, scale=None) -> Path:
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(arr, 1)
        if scale is not None:
            ds.scales = (scale,)
    return path


MOD16_FILL = list(range(32761, 32768))


def write_mod16(folder: Path, scale_tag: float | None = None) -> list[str]:
    """46 8-day composites, int16, 3 × 3 px of 500 m: raw ET = 100 + 2t (t = 0..45) everywhere, except
    pixel (0, 2) = 32765 (barren fill code) in every composite and pixel (2, 2) = 32761 in composite 7."""
    folder.mkdir()
    files = []
    for t in range(46):
        a = np.full((3, 3), 100 + 2 * t, dtype=np.int16)
        a[0, 2] = 32765
        if t == 7:
            a[2, 2] = 32761
        f = folder / f"MOD16A2.A2023{1 + 8 * t:03d}.ET_500m.tif"
        files.append(str(write_tif(f, a, Affine(500, 0, X0, 0, -500, Y0 + 1500), CRS_GK, scale=scale_tag)))
    return files


def test_mod16_8day_stack_sums_46_composites_to_annual_mm(tmp_path):
    from eco_value.inputs.products import ProductSpec, open_product

    files = write_mod16(tmp_path / "mod16")
    spec = ProductSpec(path=str(tmp_path / "mod16" / "*.tif"), unit="kg/m2/8d", scale=0.1,
                       valid_range=(-32767, 32700), fill_values=MOD16_FILL, aggregate="sum", expected_steps=46)
    et = open_product(spec)
    assert et.attrs["unit"] == "mm" and et.attrs["steps"] == 46 and len(files) == 46
    v = et.values
    assert v[0, 0] == pytest.approx(0.1 * (100 * 46 + 2 * (45 * 46 // 2)), abs=1e-9)  # 667.0 mm
    assert np.isnan(v[0, 2]) and np.isnan(v[2, 2])   # fill in every / in one composite
    assert np.count_nonzero(np.isnan(v)) == 2

    # the last composite missing: a partial year
    with pytest.raises(InputError) as e:
        open_product(spec.model_copy(update={"path": files[:45]}))
    assert "45 time step(s), expected 46" in str(e.value)
    # fill codes not declared
    with pytest.raises(InputError) as e:
        open_product(spec.model_copy(update={"fill_values": []}))
    assert "47 stored value(s) outside valid_range [-32767, 32700] that are not declared fill values: " \
           "32761 (1×), 32765 (46×)" in str(e.value)
    # scale not declared: raw numbers (100..190) are beyond what kg/m2/8d can be
    with pytest.raises(InputError) as e:
        open_product(spec.model_copy(update={"scale": None}))
    msg = str(e.value)
    assert e.value.kinds() == {"implausible-values"}
    assert "decoded values span 100..190 kg/m2/8d, outside the plausible 0..120; no scale is declared" in msg
    assert "MOD16A2 ET: scale = 0.1" in msg


def test_a_file_declaring_a_scale_the_spec_does_not_is_refused(tmp_path):
    from eco_value.inputs.products import ProductSpec, open_product

    write_mod16(tmp_path / "m", scale_tag=0.1)
    with pytest.raises(InputError) as e:
        open_product(ProductSpec(path=str(tmp_path / "m" / "*.tif"), unit="kg/m2/8d", aggregate="sum",
                                 fill_values=MOD16_FILL))
    assert "the file declares a scale factor 0.1 but the spec declares none" in str(e.value)


def write_chirps(path: Path) -> Path:
    """CHIRPS-like daily NetCDF-4: 2022 (365 days of 1 mm/d) and 2023 (2 + 0.5·(day mod 10) mm/d),
    0.05° cells over the 4 × 4 grid, _FillValue -9999 at one cell on 2023-03-01."""
    import pandas as pd
    import xarray as xr
    from pyproj import Transformer

    lon0, lat0 = Transformer.from_crs(CRS_GK, "EPSG:4326", always_xy=True).transform(X0 + 200, Y0 + 200)
    lat = lat0 + np.array([0.05, 0.0, -0.05])
    lon = lon0 + np.array([-0.05, 0.0, 0.05, 0.10])
    time = pd.date_range("2022-01-01", "2023-12-31", freq="D")
    p = np.ones((time.size, 3, 4), dtype=np.float32)
    d23 = np.arange(365)
    p[365:] = (2.0 + 0.5 * (d23 % 10))[:, None, None]
    p[365 + 59, 2, 3] = -9999.0
    ds = xr.Dataset({"precipitation": (("time", "latitude", "longitude"), p,
                                       {"units": "mm/day"})},
                    coords={"time": time, "latitude": lat, "longitude": lon})
    ds["precipitation"].encoding["_FillValue"] = np.float32(-9999.0)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def test_chirps_daily_netcdf_sums_one_year_and_resamples_to_the_grid(tmp_path):
    from eco_value.inputs.products import ProductSpec, open_product, to_grid

    spec = ProductSpec(path=str(write_chirps(tmp_path / "chirps.nc")), variable="precipitation", unit="mm/d",
                       aggregate="sum", year=2023, expected_steps=365, fill_values=[-9999.0], crs="EPSG:4326")
    p = open_product(spec)
    assert p.chunks is not None  # lazy until computed
    # 2·365 + 0.5·(36·45 + (0+1+2+3+4)) = 730 + 815 = 1545 mm
    v = p.values
    assert v[0, 0] == pytest.approx(1545.0, abs=1e-9)
    assert np.isnan(v[2, 3]) and np.count_nonzero(np.isnan(v)) == 1
    on = to_grid(p, grid4(), "bilinear").values
    assert on.shape == (4, 4) and np.allclose(on, 1545.0, rtol=0, atol=1e-9)
    with pytest.raises(InputError) as e:
        open_product(spec.model_copy(update={"year": 2024}))
    assert "0 time step(s) in 2024, expected 365" in str(e.value)


def test_worldcover_codes_become_ecosystem_types_on_the_grid(tmp_path):
    from eco_value.inputs.products import open_classes

    # 8 × 8 px of 50 m over the 4 × 4 grid of 100 m: each grid pixel holds a 2 × 2 block (mode)
    blocks = np.array([[10, 10, 40, 40], [20, 30, 40, 50], [80, 90, 95, 100], [0, 60, 70, 10]], dtype=np.uint8)
    wc = np.kron(blocks, np.ones((2, 2), dtype=np.uint8))
    f = write_tif(tmp_path / "ESA_WorldCover_10m_2021_v200_Map.tif", wc, Affine(50, 0, X0, 0, -50, Y0 + 400),
                  CRS_GK, nodata=0)
    lc = open_classes(f, "worldcover", grid4())
    T = {t.name: t.id for t in TYPES}
    assert lc.values.tolist() == [
        [T["forest"], T["forest"], T["cropland"], T["cropland"]],
        [T["shrub"], T["grassland"], T["cropland"], T["impervious"]],
        [T["water"], T["marsh"], T["wetland"], T["grassland"]],
        [255, T["barren"], T["snow"], T["forest"]]]
    wc[0, 0:2] = 15
    wc[1, 0:2] = 15
    f2 = write_tif(tmp_path / "bad.tif", wc, Affine(50, 0, X0, 0, -50, Y0 + 400), CRS_GK, nodata=0)
    with pytest.raises(InputError) as e:
        open_classes(f2, "worldcover", grid4()).compute()
    assert "1 pixel(s) on the run grid have codes that class scheme 'worldcover' does not map: '15' (1×)" \
        in str(e.value)


def test_mojibake_repair_recognises_both_directions_and_leaves_real_chinese_alone():
    from eco_value.inputs.vectors import repair_of

    assert repair_of("鍗楀疂灞遍晣") == "南宝山镇"          # UTF-8 bytes shown as GBK
    assert repair_of("ÄÏ±¦É½Õò") == "南宝山镇"            # GBK bytes shown as Latin-1
    assert repair_of("å\u008d\u0097å®\u009då±±") == "南宝山"  # UTF-8 bytes shown as Latin-1
    assert repair_of("锟斤拷") == "?"                       # lost for good
    for real in ("南宝山镇", "杉木林", "中龄林", "乔木林地", "川(2019)邛崃市不动产权第0000101号", "m²", "Müller"):
        assert repair_of(real) is None


def test_tenure_ambiguous_lb_xb_goes_by_geometry_or_is_reported(tmp_path):
    from eco_value.inputs import tenure

    g = stands()
    g.loc[2, ["LIN_BAN", "XIAO_BAN"]] = ["0012", "000001"]  # same LB/XB as row 0, another village (CUN 202)
    p = inv.read_inventory(write_shp(g, tmp_path / "x.shp"), species=write_species(tmp_path / "s.csv"))
    rec = gpd.GeoDataFrame({"BDCQZH": ["A1", "A2"], "LDSYQSSJ": ["2009-01-01"] * 2, "LDSYJSSJ": ["2058-12-31"] * 2,
                            "SLLMSYQR": ["张三", "李四"], "SYQMJ": [29.4, 60.0], "LB": ["12", "12"], "XB": ["1", "1"]},
                           geometry=[box(X0 + 10, Y0 + 10, X0 + 100, Y0 + 100), box(X0 - 300, Y0, X0 - 250, Y0 + 50)],
                           crs=CRS_GK)
    rec.to_file(tmp_path / "zd.gpkg", layer="zd")
    j = tenure.join_tenure(p, tenure.read_tenure(tmp_path / "zd.gpkg"))
    assert j.records[["certificate", "xiaoban_id", "matched_by"]].values.tolist() == \
        [["A1", "515101831012020012000001", "geometry"]]
    assert j.unmatched["reason"].tolist() == [
        "LB/XB 0012/000001 matches 2 小班 (515101831012010012000001, 515101831012020012000001)"]
