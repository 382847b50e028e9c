"""What a run is asked for (:class:`RunOptions`) and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..rules import RuleSet

Progress = Callable[[str, float | None], None]
COMPUTE_STAGE = "compute (one pass over the inputs)"


@dataclass
class RunOptions:
    rules: "str | RuleSet" = "cn2011-mee2020"
    out_dir: Path | None = None
    mc_draws: int = 1000
    mc_seed: int = 42
    chunk_px: int = 512
    scheduler: str | None = None
    write_rasters: bool = True
    force: bool = False
    price_year: int | None = None
    overwrite: bool = False     # replace an existing non-empty out_dir (never the catalog, inputs, database)

    def fingerprint_part(self) -> dict:
        return {"mc_draws": self.mc_draws, "mc_seed": self.mc_seed, "price_year": self.price_year}
