"""The HTML report renders in headless Chromium without console errors; a screenshot is kept."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_contents(pilot_run):
    store, res = pilot_run
    html = Path(res.outputs["report"]).read_text(encoding="utf-8")
    assert res.run_id in html and res.summary["rules"]["hash"][:12] in html
    assert "Forest coverage against Chengdu" in html and "41 %" in html and "42 %" in html
    assert html.count("data:image/png;base64,") >= 4          # 3 maps + bar chart
    assert "SYNTHETIC" in html
    assert "carbon.species.cunninghamia.bef" in html           # every parameter with its source
    assert "sha256" in html.lower()


@pytest.mark.skipif(CHROMIUM is None, reason="NO CHROMIUM: apt-get install chromium (the .ci/run script does)")
def test_report_renders_in_headless_chromium(pilot_run, tmp_path):
    _store, res = pilot_run
    shot = Path(res.outputs["report"]).with_name("report-screenshot.png")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1280,2200", f"--screenshot={shot}", Path(res.outputs["report"]).as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000
    console = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln]
    assert console == [], console
    from PIL import Image
    img = Image.open(shot)
    assert img.size == (1280, 2200)
    colors = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colors is None or len(colors) > 500                 # a real page with maps, not a blank one


def test_report_maps_are_read_decimated(pilot_run, tmp_path, monkeypatch):
    """The report never reads a whole raster at full resolution: every map image comes from a read of at most
    MAP_MAX_PX a side (out_shape: GDAL decimates from the overviews), here set below the pilot's raster size."""
    import rasterio
    from rasterio.io import DatasetReader

    from eco_value.outputs import report

    store, res = pilot_run
    folder = Path(res.outputs["report"]).parent
    sizes = {}
    for tif in folder.glob("*.tif"):
        with rasterio.open(tif) as d:
            sizes[tif.name] = (d.height, d.width)
    small = min(min(s) for s in sizes.values()) // 3
    assert small >= 8
    monkeypatch.setattr(report, "MAP_MAX_PX", small)
    reads = []
    real_read = DatasetReader.read

    def spy(self, *a, **k):
        arr = real_read(self, *a, **k)
        reads.append((Path(self.name).name, arr.shape[-2:]))
        return arr

    monkeypatch.setattr(DatasetReader, "read", spy)
    out = report.write_report(store, res.run_id, tmp_path / "report.html", rasters=folder)
    assert out.read_text(encoding="utf-8").count("data:image/png;base64,") >= 4
    maps = [r for r in reads if r[0] in sizes]
    assert len(maps) >= 3                                       # sink, GEP and stock maps
    for name, shape in maps:
        assert max(shape) <= small < min(sizes[name]), (name, shape, sizes[name])
