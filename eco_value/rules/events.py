"""Change events of the carbon engine (``accounting_rules/change_events.toml``): engine ids of the
``change_event@t2`` layer and the land-use-change category each recorded event gives a pixel."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import RuleSetError
from ..resources import data_dir
from .ecosystem import N_IDS

NO_EVENT = 0   # the change_event layer's value where no event is recorded


@dataclass(frozen=True)
class ChangeEvents:
    ids: dict[str, int]     # event name -> engine id
    lucc: dict[str, str]    # event name -> land-use-change category ("" = keep the differencing)
    path: str

    def lucc_lut(self, categories: dict[str, int]) -> np.ndarray:
        """``lut[event id]`` = the LUCC category id a recorded event forces, 0 where it keeps the differencing."""
        lut = np.zeros(N_IDS, dtype=np.uint8)
        for name, i in self.ids.items():
            c = self.lucc[name]
            if c:
                if c not in categories:
                    raise RuleSetError(f"{self.path}: event '{name}' names the land-use-change category '{c}', "
                                       f"which the carbon engine does not have ({', '.join(categories)})")
                lut[i] = categories[c]
        return lut


@lru_cache(maxsize=1)
def change_events() -> ChangeEvents:
    path = data_dir("accounting_rules") / "change_events.toml"
    with open(path, "rb") as f:
        raw = tomllib.load(f)["events"]
    ids = {k: int(v["id"]) for k, v in raw.items()}
    bad = [k for k, i in ids.items() if not NO_EVENT < i < N_IDS - 1]
    if bad or len(set(ids.values())) != len(ids):
        raise RuleSetError(f"{path}: event ids must be distinct and between {NO_EVENT + 1} and {N_IDS - 2} ({bad or ids})")
    return ChangeEvents(ids, {k: str(v.get("lucc", "")) for k, v in raw.items()}, str(path))
