"""The direction of imports in shared/architecture.md holds (checked on the source, with ast)."""

from __future__ import annotations

import ast
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


def test_science_modules_touch_no_store_output_or_screen():
    for sub in ("carbon", "services"):
        for f in (ROOT / sub).glob("*.py"):
            mods = imports_of(f)
            bad = {m for m in mods if m.startswith(("eco_value.store", "eco_value.outputs", "eco_value.cli", "rich", "typer"))}
            assert not bad, (f.name, bad)
            import re
        assert not re.search(r"(?<![\w.])print\(", f.read_text(encoding="utf-8")), f


def test_science_modules_open_no_files():
    """carbon/ and services/ are pure functions: no raster/vector/table I/O library, no open()."""
    import re
    io_libs = ("rasterio", "rioxarray", "geopandas", "fiona", "osgeo", "csv", "sqlalchemy", "sqlmodel")
    for sub in ("carbon", "services"):
        for f in (ROOT / sub).glob("*.py"):
            bad = {m for m in imports_of(f) if m.split(".")[0] in io_libs}
            assert not bad, (f.name, bad)
            assert not re.search(r"(?<![\w.])open\(|read_csv\(|\.to_csv\(|to_raster\(", f.read_text(encoding="utf-8")), f


def test_store_computes_nothing():
    for f in (ROOT / "store").rglob("*.py"):
        mods = imports_of(f)
        assert not {m for m in mods if m.startswith(("eco_value.carbon", "eco_value.services", "dask", "xarray"))}, f


def test_nothing_below_cli_prints():
    allowed = {"cli.py", "verify.py", "scale.py"}   # the last two are stand-alone command-line entry points
    for f in ROOT.rglob("*.py"):
        if f.name in allowed or "migrations" in f.parts:
            continue
        import re
        assert not re.search(r"(?<![\w.])print\(", f.read_text(encoding="utf-8")), f
