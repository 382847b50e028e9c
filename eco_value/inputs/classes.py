"""Class schemes of categorical layers are data now: ``raster_inputs/schemes/*.toml``, read by
:mod:`eco_value.inputs.schemes`. This module keeps the old import path of the registry."""

from __future__ import annotations

from .schemes import SCHEMES

__all__ = ["SCHEMES"]
