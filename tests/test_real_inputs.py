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
from eco_value.inputs.crosswalk import load_ecosystem_types, load_scheme

CRS_GK = "EPSG:4543"  # CGCS2000 / 3-degree Gauss-Kruger CM 102E, the bureau's usual CRS
X0, Y0 = 500_000.0, 3_400_000.0
TYPES = load_ecosystem_types()

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
    assert load_scheme("worldcover").nodata == ("0",)
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
