"""Nodata inside the region, per service and zone (issue 16 item 6): a few NaN pixels planted in
``precip`` inside one township of the 300 m pilot are counted, by hand, for every service whose SPEC
reads precip (water conservation, flood regulation) in that township, the county and the parcels;
zero for every other service; stored per zone × service, in ``run --json``, the zone tables and the
report; above ``rasters.max_service_nodata_share_per_zone`` the run is refused and nothing is stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from eco_value.inputs.limits import load_limits
from eco_value.services import SERVICES

from conftest import PILOT300_RES_M as RES_M   # the shared 300 m pilot's pixel size
from conftest import cli_in_process as cli

TOWNSHIP = "510183002"       # the pilot's smallest township (~434 px at 300 m)
READS_PRECIP = sorted(k for k, m in SERVICES.items() if "precip" in m.SPEC.layer_keys)



def _plant(d: Path, n: int) -> tuple[list[shapely.Polygon], dict[str, float]]:
    """NaN in ``precip`` on ``n`` pixels lying wholly inside the township (and the county) with valid land
    cover at t1 and t2; returns the pixels' boxes and, by hand, each parcel's covered pixel count."""
    town = gpd.read_file(d / "townships.gpkg")
    town = town[town.township_id.astype(str) == TOWNSHIP].geometry.iloc[0]
    county = gpd.read_file(d / "boundary.gpkg").geometry.union_all()
    with rasterio.open(d / "lulc_2020.tif") as s:
        lc1 = s.read(1)
        nod1 = s.nodata
    with rasterio.open(d / "lulc_2023.tif") as s:
        lc2 = s.read(1)
        nod2 = s.nodata
    path = d / "precip.tif"
    with rasterio.open(path) as s:
        a, prof, t = s.read(1), s.profile, s.transform
    boxes, cells = [], []
    for r, c in zip(*np.nonzero((lc1 != nod1) & (lc2 != nod2) & (a != prof["nodata"]))):
        x0, y0 = t * (c, r)
        b = shapely.box(x0, y0 - RES_M, x0 + RES_M, y0)
        if town.contains(b) and county.contains(b):
            boxes.append(b)
            cells.append((r, c))
        if len(boxes) == n:
            break
    assert len(boxes) == n
    for r, c in cells:
        a[r, c] = np.nan
    path.unlink()
    prof.update(driver="GTiff")
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(a, 1)
    parcels = gpd.read_file(d / "parcels.gpkg")
    by_parcel: dict[str, float] = {}
    for pid, g in zip(parcels["parcel_id"].astype(str), parcels.geometry):
        cov = sum(g.intersection(b).area for b in boxes) / RES_M ** 2
        if cov > 0:
            by_parcel[pid] = cov
    return boxes, by_parcel


def test_limit_is_data_with_unit_and_reason():
    lim = load_limits()
    b = lim.max_service_nodata_share_per_zone
    assert b is not None and 0 < b.value < 1 and "zone" in b.unit and len(b.source) > 40
    assert set(lim.service_nodata_zone_kinds) == {"county", "township"}


def test_precip_gaps_are_counted_per_service_and_zone(cat_dir, tmp_path, capsys, monkeypatch):
    from eco_value.store import Store

    n = 3   # 0.7 % of the township: below the limit (a warning), and below the per-layer limit of the region
    _boxes, by_parcel = _plant(cat_dir, n)
    assert READS_PRECIP == ["flood_regulation", "water_conservation"]
    db = f"sqlite:///{tmp_path / 'nd.sqlite'}"
    code, out, err = cli(["run", cat_dir / "catalog.toml", "--db", db, "--out", tmp_path / "out", "--mc-draws", "50",
                          "--json"], capsys, monkeypatch)
    assert code == 0, err
    payload = json.loads(out)
    ha_px = RES_M ** 2 / 1e4
    for svc, v in payload["gep"]["by_service"].items():
        want = n if svc in READS_PRECIP else 0
        assert v["nodata_px"] == pytest.approx(want, abs=1e-9), svc
        assert v["nodata_ha"] == pytest.approx(want * ha_px, abs=1e-9), svc
    warn = [w for w in payload["input_warnings"] if w.startswith("[nodata-inside-zone]")]
    assert len(warn) == len(READS_PRECIP)
    assert all("precip" in w and TOWNSHIP in w and "3 px" in w for w in warn), warn

    store = Store(db)
    svc = store.table("services", payload["run_id"])
    for kind, zone_ok in (("county", lambda z: True), ("township", lambda z: z == TOWNSHIP)):
        s = svc[svc.zone_kind == kind]
        for r in s.itertuples():
            want = n if (r.service in READS_PRECIP and zone_ok(r.zone_id)) else 0
            assert r.nodata_px == pytest.approx(want, abs=1e-9), (kind, r.zone_id, r.service)
            assert r.nodata_ha == pytest.approx(want * ha_px, abs=1e-9)
    p = svc[(svc.zone_kind == "parcel") & (svc.service == "water_conservation")].set_index("zone_id")
    got = {z: float(v) for z, v in p.nodata_px.items() if v > 0}
    assert got.keys() == by_parcel.keys()
    for z, v in by_parcel.items():
        assert got[z] == pytest.approx(v, rel=1e-6), z
    assert (svc[(svc.zone_kind == "parcel") & ~svc.service.isin(READS_PRECIP)].nodata_px == 0).all()

    # the zone tables and the report say it too
    res_dir = tmp_path / "out"
    town_csv = next(res_dir.rglob("*township*.csv"))
    import pandas as pd

    t = pd.read_csv(town_csv, dtype={"zone_id": str}).set_index("zone_id")
    assert t.loc[TOWNSHIP, "water_conservation_nodata_ha"] == pytest.approx(n * ha_px)
    assert t.loc[TOWNSHIP, "air_purification_nodata_ha"] == 0
    html = next(res_dir.rglob("report*.html")).read_text(encoding="utf-8")
    assert "Missing data" in html and "water_conservation" in html.split("Missing data", 1)[1]


def test_above_the_zone_limit_the_run_is_refused(cat_dir, tmp_path, capsys, monkeypatch):
    from eco_value.store import Store

    n = 10  # 2.3 % of the township (limit 1 %), 0.07 % of the region (below the per-layer limit 0.1 %)
    _plant(cat_dir, n)
    db = f"sqlite:///{tmp_path / 'refused.sqlite'}"
    code, _out, err = cli(["run", cat_dir / "catalog.toml", "--db", db, "--out", tmp_path / "out", "--mc-draws", "50",
                           "--json"], capsys, monkeypatch)
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err
    lines = [x for x in err.splitlines() if "[nodata-inside-zone]" in x]
    assert len(lines) == len(READS_PRECIP)
    for svc in READS_PRECIP:
        line = next(x for x in lines if f"service '{svc}'" in x)
        assert "precip.tif" in line and "(layer 'precip')" in line
        assert f"township {TOWNSHIP}: {n} px" in line and "Fix:" in line
        assert "max_service_nodata_share_per_zone = 0.01" in line and "validation.toml" in line
    store = Store(db)
    runs = store.runs()
    assert all(r.status == "failed" for r in runs)
    for r in runs:
        assert sum(store.count_rows(r.id).values()) == 0
    assert not (tmp_path / "out").exists()
