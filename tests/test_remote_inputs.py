"""Remote inputs (issue 13 item 7): catalog paths ``http(s)://`` read through GDAL's /vsicurl/, a
manifest that records how each input was fingerprinted, re-runs that refuse a changed remote file,
and clear errors for unreachable URLs, 404s and servers without range requests.

A local HTTP server (tests/range_server.py, in a subprocess) serves copies of the pilot's files with Range and ETag support.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eco_value.errors import InputError
from eco_value.inputs import remote
from eco_value.inputs.catalog import load_catalog
from eco_value.inputs.validate import check_structure
from eco_value.pipeline import RunOptions, run_valuation
from eco_value.store import Store


@pytest.fixture
def server(tmp_path):
    """The range server in its own process: GDAL holds the GIL while it opens a /vsicurl/ file, so a
    server thread of this process could not answer it."""
    served = tmp_path / "served"
    served.mkdir()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("range_server.py")), str(served)],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield served, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _as_cog(src: Path, dst: Path, bump: float = 0.0) -> None:
    with rasterio.open(src) as s:
        a = s.read(1)
        prof = s.profile
    if bump:
        a = a.copy()
        a[a.shape[0] // 2, a.shape[1] // 2] += bump
    prof.update(driver="COG", blocksize=256, compress="NONE")   # a bumped pixel keeps the size
    for k in ("blockxsize", "blockysize", "tiled", "interleave"):
        prof.pop(k, None)
    with rasterio.open(dst, "w", **prof) as d:
        d.write(a, 1)


def _point(cat_path: Path, section: str, url: str) -> None:
    """Set the path of one catalog entry (``layers.precip``) to ``url``."""
    text = cat_path.read_text()
    head, sep, rest = text.partition(f"[{section}]\n")
    assert sep, section
    rest = re.sub(r'^path = ".*"$', f'path = "{url}"', rest, count=1, flags=re.M)
    cat_path.write_text(head + sep + rest)


@pytest.fixture
def remote_pilot(pilot_copy, server):
    """The pilot with precip as a COG and the townships as a GeoPackage, both served over HTTP."""
    served, base = server
    _as_cog(pilot_copy / "precip.tif", served / "precip.tif")
    shutil.copy(pilot_copy / "townships.gpkg", served / "townships.gpkg")
    local = pilot_copy / "catalog.toml"
    rem = pilot_copy / "remote.toml"
    shutil.copy(local, rem)
    _point(rem, "layers.precip", f"{base}/precip.tif")
    _point(rem, "vectors.townships", f"{base}/townships.gpkg")
    return local, rem, served, base


def _results(store, run_id):
    s = store.table("services", run_id).sort_values(["zone_kind", "zone_id", "service"])
    c = store.table("carbon", run_id).sort_values(["zone_kind", "zone_id"])
    return (s[["zone_kind", "zone_id", "service", "quantity", "value_cny"]].to_numpy().tolist(),
            c[["zone_kind", "zone_id", "stock_t1_tc", "stock_t2_tc", "net_sink_tco2e_per_yr"]].to_numpy().tolist())


def test_catalog_maps_urls_to_gdal_vsi_paths_and_keeps_relative_paths(remote_pilot):
    _local, rem, _served, base = remote_pilot
    cat = load_catalog(rem)
    p = cat.path_of(cat.layers["precip"].path)
    assert isinstance(p, remote.RemotePath)
    assert str(p) == f"/vsicurl/{base}/precip.tif" and p.name == "precip.tif"
    assert cat.path_of(cat.layers["dem"].path) == rem.parent.resolve() / "dem.tif"
    assert str(cat.path_of("s3://bucket/dir/x.tif")) == "/vsis3/bucket/dir/x.tif"
    assert remote.mask_url("https://bob:s3cret@h.example/x.tif?X-Amz-Signature=abc&v=1") == \
        "https://bob:***@h.example/x.tif?X-Amz-Signature=***&v=1"


def test_remote_run_equals_local_run_records_hash_kinds_and_refuses_a_changed_file(remote_pilot, pilot_run,
                                                                                  tmp_path, monkeypatch):
    """One run with precip (a COG, above the threshold: ETag + size) and the townships (a GeoPackage,
    below it: SHA-256 streamed) served over HTTP gives exactly the local run's results."""
    from eco_value.audit import _refuse_changed_remote, run_context, rerun

    _local, rem, served, base = remote_pilot
    precip, towns = served / "precip.tif", served / "townships.gpkg"
    assert check_structure(load_catalog(rem)) == []
    assert towns.stat().st_size < precip.stat().st_size
    settings = dict(remote.remote_settings(), max_streamed_hash_bytes=precip.stat().st_size - 1)
    monkeypatch.setattr(remote, "remote_settings", lambda: settings)
    streamed = []
    monkeypatch.setattr(remote, "sha256_stream", lambda url, f=remote.sha256_stream: streamed.append(url) or f(url))
    local_store, local = pilot_run
    st = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    run = run_valuation(rem, st, RunOptions(write_rasters=False, mc_draws=500))
    # exactly equal, every zone, service and carbon figure (the Monte Carlo bounds aside: other draws)
    assert _results(st, run.run_id) == _results(local_store, local.run_id)
    assert run.summary["gep"] == local.summary["gep"]
    inp = st.table("inputs", run.run_id).set_index("layer")
    pr, tw = inp.loc["precip"], inp.loc["townships"]
    etag = '"' + hashlib.md5(precip.read_bytes()).hexdigest() + '"'
    assert (pr.path, pr.hash_kind, pr.etag, pr.size_bytes, pr.sha256) == (
        f"{base}/precip.tif", "etag+size", etag, precip.stat().st_size, "")
    assert (tw.path, tw.hash_kind, tw.sha256, tw.size_bytes) == (
        f"{base}/townships.gpkg", "sha256", hashlib.sha256(towns.read_bytes()).hexdigest(), towns.stat().st_size)
    assert streamed == [f"{base}/townships.gpkg"]       # the large file was never downloaded to hash it
    assert tw.etag == '"' + hashlib.md5(towns.read_bytes()).hexdigest() + '"'
    local_rows = inp.drop(["precip", "townships"])
    c = load_catalog(rem)
    assert len(local_rows) == len(c.layers) + len(c.vectors) + len(c.tables) - 2   # every other input, hashed locally
    assert set(local_rows.hash_kind) == {"sha256"} and set(local_rows.etag) == {""}
    # unchanged: the re-check passes (nothing refused, nothing changed), whatever the threshold says now
    monkeypatch.setattr(remote, "remote_settings", lambda: dict(settings, max_streamed_hash_bytes=10**12))
    rows: list = []
    r, _cat, _rules, _opts, changed = run_context(st, run.run_id, rows)
    assert changed == [] and {x["layer"]: x["hash_kind"] for x in rows}["precip"] == "etag+size"
    _refuse_changed_remote(st, r, rows)
    # the served GeoPackage changes: the re-run refuses, naming the URL and the SHA-256s
    saved = towns.read_bytes()
    towns.write_bytes(saved + b"\0")
    with pytest.raises(InputError) as e:
        rerun(st, run.run_id)
    (p,) = e.value.problems
    assert (p.kind, p.layer, p.file) == ("remote-input-changed", "townships", f"{base}/townships.gpkg")
    assert f"SHA-256 {tw.sha256[:16]}" in p.problem
    towns.write_bytes(saved)
    # the COG changes (same size, other content → another ETag): refused too
    _as_cog(rem.parent / "precip.tif", precip, bump=1.0)
    assert precip.stat().st_size == pr.size_bytes
    with pytest.raises(InputError) as e:
        rerun(st, run.run_id)
    (p,) = e.value.problems
    assert (p.kind, p.layer, p.file) == ("remote-input-changed", "precip", f"{base}/precip.tif")
    assert f"ETag {etag} and size {pr.size_bytes:,} B" in p.problem and "now ETag" in p.problem


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("url, kind, says", [
    ("{base}/nothere.tif", "url-not-found", "404"),
    ("{base}/norange/precip.tif", "no-range-support", "range requests"),
    ("http://127.0.0.1:{closed}/precip.tif", "unreachable-url", "cannot be reached"),
    ("http://bob:s3cret@127.0.0.1:{closed}/precip.tif", "unreachable-url", "cannot be reached"),
])
def test_bad_remote_inputs_give_one_clear_error_naming_the_url(remote_pilot, url, kind, says):
    _local, rem, _served, base = remote_pilot
    url = url.format(base=base, closed=_closed_port())
    _point(rem, "layers.precip", url)
    probs = check_structure(load_catalog(rem))
    (p,) = [p for p in probs if p.layer == "precip"]
    assert p.kind == kind and says in p.problem and p.fix
    assert p.file == url.replace(":s3cret@", ":***@")
    assert "s3cret" not in str(InputError(probs))


def test_a_remote_table_is_refused_with_the_fix(remote_pilot):
    _local, rem, _served, base = remote_pilot
    _point(rem, "tables.tourism", "https://bob:s3cret@example.org/tourism.csv")
    (p,) = [p for p in check_structure(load_catalog(rem)) if p.layer == "tourism"]
    assert (p.kind, p.file) == ("remote-table", "https://bob:***@example.org/tourism.csv")
    assert "download the CSV" in p.fix


def test_cli_validate_of_a_missing_remote_file_exits_2_naming_the_url(remote_pilot, tmp_path):
    from typer.testing import CliRunner

    from eco_value.cli import app

    _local, rem, _served, base = remote_pilot
    _point(rem, "layers.precip", f"{base}/gone.tif")
    r = CliRunner().invoke(app, ["validate", str(rem)])
    assert r.exit_code == 2, r.output
    assert f"{base}/gone.tif" in r.output and "404" in r.output
