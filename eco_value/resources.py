"""Locate the data folders shipped with eco-value.

In a wheel the folders ``accounting_rules/``, ``raster_inputs/`` and ``exchange_export/`` are
installed as ``eco_value/_data/<name>`` (hatchling ``force-include``); in a source checkout or an
editable install they sit beside the package. :func:`data_dir` finds either.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DATA_FOLDERS = ("accounting_rules", "raster_inputs", "exchange_export")


def data_dir(name: str) -> Path:
    """Return the path of a shipped data folder (``accounting_rules``, ``raster_inputs``, ...)."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; expected one of {DATA_FOLDERS}")
    packaged = Path(str(resources.files("eco_value"))) / "_data" / name
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / name
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"eco-value data folder {name!r} not found (looked in {packaged} and {source}); "
        "reinstall the package with `pip install .`"
    )
