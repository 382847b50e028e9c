"""A plain (non-editable) wheel install in a fresh venv gives a working eco-value, data folders included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_in_fresh_venv_runs_pilot_data_validate_and_run(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
                   check=True)
    wheel = next(dist.glob("eco_value-*.whl"))
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert "eco_value/_data/accounting_rules/cn2011-mee2020.toml" in names
    assert "eco_value/_data/raster_inputs/pilot_boundaries.geojson" in names
    assert any(n.startswith("eco_value/_data/exchange_export/") for n in names)
    assert "eco_value/store/migrations/versions/0001_initial_schema.py" in names
    venv = tmp_path / "venv"
    # dependencies come from the running interpreter's site-packages (a venv or the system's: a .pth
    # line appends them after the new venv's own folder, and does not run their .pth hooks, so the
    # editable install of the checkout stays invisible); eco-value itself only from the wheel
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    child_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(child_site, "eco_value_test_parent_site.pth").write_text("\n".join(sorted(parent)) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import eco_value, eco_value.resources as r; print(eco_value.__file__); print(r.data_dir('accounting_rules'))"],
                           cwd=work, capture_output=True, text=True, check=True, env=env).stdout.split()
    assert str(venv) in where[0] and str(venv) in where[1]
    exe = venv / "bin" / "eco-value"
    subprocess.run([str(exe), "pilot-data", "dayi", "--out", "dayi", "--resolution", "300"], cwd=work, check=True, env=env)
    subprocess.run([str(exe), "validate", "dayi/catalog.toml"], cwd=work, check=True, env=env)
    r = subprocess.run([str(exe), "run", "dayi/catalog.toml", "--db", f"sqlite:///{work / 'w.sqlite'}", "--mc-draws", "20", "--json"],
                       cwd=work, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["gep"]["total_cny"] > 0
