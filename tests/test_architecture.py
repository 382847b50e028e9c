"""The direction of imports in shared/architecture.md holds (checked on the source, with ast)."""

from __future__ import annotations

import ast
import re
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
                     r"to_raster|write_text|write_bytes|read_text|read_bytes|savez?|loadtxt|exact_extract)\(")
IO_LIBS = ("rasterio", "rioxarray", "geopandas", "fiona", "osgeo", "csv", "sqlalchemy", "sqlmodel", "pyogrio")
PURE = ("carbon", "services", "accounts")
# known violations, each named in issue 16 (moving them is a separate change); new ones fail
KNOWN_IO = {("accounts", "zonal.py")}


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
            hit = FILE_IO.search(f.read_text(encoding="utf-8"))
            assert not hit, (f, hit and hit.group(0))
    assert seen == KNOWN_IO, "a known violation is gone: remove it from KNOWN_IO"


def test_file_io_patterns_are_caught():
    for bad in ("with open(p) as f:", "rasterio.open(path)", "gpd.read_file(x)", "df.to_csv(p)", "p.write_text(s)"):
        assert FILE_IO.search(bad), bad
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
