"""The direction of imports in shared/architecture.md holds (checked on the source, with ast)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import eco_value

ROOT = Path(eco_value.__file__).parent


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    pkg = path.relative_to(ROOT.parent).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level])
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module or "")
    return out


def test_verifier_stands_alone():
    mods = imports_of(ROOT / "exchange" / "verify.py")
    assert not any(m.startswith("eco_value") for m in mods), mods
    stdlib = {"__future__", "argparse", "bisect", "csv", "hashlib", "io", "json", "math", "os", "re", "stat", "sys",
              "pathlib", "typing", "unicodedata"}
    assert {m.split(".")[0] for m in mods} <= stdlib | {"jsonschema", "nacl"}


PRINT = re.compile(r"(?<![\w.])print\(")
# file I/O below inputs/, outputs/ and store/: open(), raster/vector/table readers and writers
FILE_IO = re.compile(r"(?<![\w])(open|read_file|read_csv|read_excel|read_parquet|to_csv|to_file|to_parquet|to_excel|"
                     r"to_raster|write_text|write_bytes|read_text|read_bytes|savez?|loadtxt)\(")
# exactextract is allowed only over in-memory sources (NumPyRasterSource, WKB geometries): computation, not I/O
EXACTEXTRACT_FILES = re.compile(r"exact_extract\(\s*['\"]|RasterioRasterSource|GDALRasterSource|GDALFeatureSource")
IO_LIBS = ("rasterio", "rioxarray", "geopandas", "fiona", "osgeo", "csv", "sqlalchemy", "sqlmodel", "pyogrio")
PURE = ("carbon", "services", "accounts")
# known violations, each named in issue 16 (moving them is a separate change); new ones fail. Empty since
# the map writes became a hook (outputs.maps.WindowWriter) and carbon/invest.py's reads moved to outputs/.
KNOWN_IO: set = set()


def _files(sub):
    return sorted((ROOT / sub).rglob("*.py"))


def test_science_modules_touch_no_store_output_or_screen():
    checked = 0
    for sub in PURE:
        for f in _files(sub):
            mods = imports_of(f)
            bad = {m for m in mods if m.startswith(("eco_value.store", "eco_value.outputs", "eco_value.cli", "rich", "typer"))}
            assert not bad, (f.name, bad)
            assert not PRINT.search(f.read_text(encoding="utf-8")), f
            checked += 1
    assert checked >= 15   # every file of each folder, not the last one only


def test_science_modules_open_no_files():
    """carbon/, services/ and accounts/ are pure functions: no file I/O library, no open() or writer."""
    seen = set()
    for sub in PURE:
        for f in _files(sub):
            if (sub, f.name) in KNOWN_IO:
                seen.add((sub, f.name))
                continue
            bad = {m for m in imports_of(f) if m.split(".")[0] in IO_LIBS}
            assert not bad, (f, bad)
            text = f.read_text(encoding="utf-8")
            hit = FILE_IO.search(text) or EXACTEXTRACT_FILES.search(text)
            assert not hit, (f, hit and hit.group(0))
    assert seen == KNOWN_IO, "a known violation is gone: remove it from KNOWN_IO"


def test_file_io_patterns_are_caught():
    for bad in ("with open(p) as f:", "rasterio.open(path)", "gpd.read_file(x)", "df.to_csv(p)", "p.write_text(s)"):
        assert FILE_IO.search(bad), bad
    for bad in ("exact_extract('lulc.tif', polys, 'sum')", "GDALRasterSource(path)", "RasterioRasterSource(ds)"):
        assert EXACTEXTRACT_FILES.search(bad), bad
    assert not EXACTEXTRACT_FILES.search("exact_extract(rast, src, ['cell_id'])")
    for ok in ("reopen_count = 1", "self.opened", "x.to_numpy()"):
        assert not FILE_IO.search(ok), ok


def test_store_computes_nothing():
    for f in (ROOT / "store").rglob("*.py"):
        mods = imports_of(f)
        assert not {m for m in mods if m.startswith(("eco_value.carbon", "eco_value.services", "dask", "xarray"))}, f


def test_nothing_below_cli_prints():
    allowed = {"cli.py", "verify.py", "scale.py"}   # the last two are stand-alone command-line entry points
    for f in ROOT.rglob("*.py"):
        if f.name in allowed or "migrations" in f.parts:
            continue
        assert not PRINT.search(f.read_text(encoding="utf-8")), f


# --- one typed engine interface (issue 16 item 3) ------------------------------------------------

def _package_of(parts: tuple[str, ...]) -> str:
    """The first-level package (or top-level module) of ``eco_value.<a>.<b>…``: ``a``."""
    return parts[1] if len(parts) > 1 else ""


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every private name (or name from a private module) imported from
    another first-level package of eco_value."""
    rel = path.relative_to(ROOT.parent).with_suffix("").parts
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                mod = list(rel[: len(rel) - node.level]) + (node.module.split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            if mod[0] != "eco_value" or _package_of(tuple(mod)) == _package_of(rel):
                continue
            out += [(node.lineno, ".".join(mod), a.name) for a in node.names
                    if _private(a.name) or any(_private(p) for p in mod[1:])]
        elif isinstance(node, ast.Import):
            for a in node.names:
                mod = a.name.split(".")
                if mod[0] == "eco_value" and _package_of(tuple(mod)) != _package_of(rel) and any(_private(p) for p in mod):
                    out.append((node.lineno, a.name, ""))
    return out


def test_no_module_imports_a_private_name_of_another_package():
    bad = {str(f.relative_to(ROOT)): hits for f in sorted(ROOT.rglob("*.py")) if (hits := private_imports(f))}
    assert not bad, bad


def test_private_import_scan_can_fail(tmp_path, monkeypatch):
    pkg = tmp_path / "eco_value"
    (pkg / "policy").mkdir(parents=True)
    f = pkg / "policy" / "x.py"
    f.write_text("from ..carbon.uncertainty import _param_draws, sink\nfrom . import _mine\nfrom .. import _ok_dunder as __x\n"
                 "import eco_value.engine._kernel\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    assert private_imports(f) == [(1, "eco_value.carbon.uncertainty", "_param_draws"), (3, "eco_value", "_ok_dunder"),
                                  (4, "eco_value.engine._kernel", "")]


# the lazy graph's string channels: produced by engine/graph.py, read by engine/types.py (ZoneSums) only
CHANNEL_NAMES = re.compile(r"""f?["'](?:cls:|[qv]:\{|[qv]:[a-z_]+["']|carbon:(?:sink|stock[12])["']|lucc_(?:sink|area)["']|"""
                           r"""(?:sv|sa|ca)[12]["'])""")


def test_engine_channel_names_stay_inside_the_engine():
    bad = []
    for f in sorted(ROOT.rglob("*.py")):
        if f.parent.name == "engine" and f.parent.parent == ROOT:
            continue
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if (m := CHANNEL_NAMES.search(line)):
                bad.append(f"{f.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert not bad, "use the typed accessors of eco_value.engine.ZoneSums:\n" + "\n".join(bad)


def test_channel_scan_can_fail():
    for hit in ('c[f"q:{key}"]', 'sums["carbon:sink"]', "c['cls:v:water']", 'x["sv1"]', 'c["lucc_area"]', 'f"v:{k}"',
                '"cls:" + PREFIX'):
        assert CHANNEL_NAMES.search(hit), hit
    for ok in ('"quantity"', '"value_cny"', 'f"{key}_cny"', '"carbon_sink_tco2e_per_ha_yr"', '"sv"', 'f"sva{x}"',
               '"area_ha"', '"v:"[0]'.replace('"v:"', "'valid'")):
        assert not CHANNEL_NAMES.search(ok), ok


def test_policy_and_audit_use_the_engine_interface_only():
    for f in [ROOT / "audit.py", *(ROOT / "policy").rglob("*.py"), ROOT / "accounts" / "actual.py"]:
        mods = imports_of(f)
        deep = {m for m in mods if m.startswith("eco_value.engine.")}
        assert not deep, (f.name, deep)
        text = f.read_text(encoding="utf-8")
        assert "compute_valuation" not in text and not re.search(r"\bbuild\(", text), f
