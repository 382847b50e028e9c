"""Result rows held as columns (issue 17): read back as the same dicts, stored as the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eco_value.engine import types
from eco_value.engine.types import ColumnRows, EngineUsageError


def _rows(n: int) -> ColumnRows:
    return ColumnRows({"zone_id": [f"P{i}" for i in range(n)], "service": ["soil", "water"] * (n // 2),
                       "value_cny": np.arange(n, dtype=np.float64) * 0.1, "price_year": [2020] * n})


def test_rows_read_as_dicts_with_python_numbers(monkeypatch):
    monkeypatch.setattr(types, "ROWS_PER_BATCH", 3)   # iteration crosses batch boundaries
    r = _rows(8)
    assert len(r) == 8
    assert r[1] == {"zone_id": "P1", "service": "water", "value_cny": 0.1, "price_year": 2020}
    assert type(r[1]["value_cny"]) is float
    assert r[-1]["zone_id"] == "P7" and r[7]["value_cny"] == 7 * 0.1
    assert [d["zone_id"] for d in r[2:5]] == ["P2", "P3", "P4"]
    assert [d["value_cny"] for d in r] == [i * 0.1 for i in range(8)]
    with pytest.raises(IndexError):
        r[8]


def test_set_column_adds_a_field_and_checks_its_length():
    r = _rows(4)
    r.set_column("used_share", np.array([0.5, 1.0, 0.25, 0.0]))
    assert [d["used_share"] for d in r] == [0.5, 1.0, 0.25, 0.0]
    r[0]["used_share"] = 9.0          # a dict read is a copy: the rows keep their values
    assert r[0]["used_share"] == 0.5
    with pytest.raises(EngineUsageError, match="column 'x' has 3 values for 4 rows"):
        r.set_column("x", [1, 2, 3])


def test_zone_table_as_columns_writes_the_same_csv_and_geopackage(tmp_path):
    """write_zone_tables: a table held as columns (the parcels') gives the files of the same rows as dicts."""
    import geopandas as gpd
    from shapely.geometry import box

    from eco_value.outputs import write_zone_tables

    gdf = gpd.GeoDataFrame({"pid": ["P0", "P1", "P2"]}, geometry=[box(i, 0, i + 1, 1) for i in range(3)], crs="EPSG:32648")
    cols = {"zone_kind": ["parcel"] * 3, "zone_id": ["P0", "P1", "P2"], "area_ha": np.array([1.0, 0.1 + 0.2, 0.0]),
            "gep_cny": np.array([1e9 / 3, 2.5, -0.0]), "holder_id": ["h", "", "=x"]}
    as_cols, as_dicts = ColumnRows(cols), ColumnRows(cols)[:]
    files = {}
    for name, rows in (("cols", as_cols), ("dicts", as_dicts)):
        (tmp_path / name).mkdir()
        files[name] = write_zone_tables(tmp_path / name, {"parcel": (gdf, None, "pid")}, {"parcel": rows}, "run1")
    assert Path(files["cols"]["parcel_csv"]).read_bytes() == Path(files["dicts"]["parcel_csv"]).read_bytes()
    a, b = (gpd.read_file(files[k]["geopackage"], layer="parcels") for k in ("cols", "dicts"))
    assert list(a.columns) == list(b.columns) and a.equals(b)
