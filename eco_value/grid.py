"""The run's grid: one CRS, one affine transform, one shape, one chunking (cf. odc-geo ``GeoBox``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine

M2_PER_HA = 10_000.0  # definition of the hectare (SI-accepted unit), not a model parameter
HA_PER_KM2 = 100.0  # 1 km2 = 100 ha (definition), not a model parameter
# per-pixel quantities of the engine's kernel (carbon, services): float32, half the memory traffic of
# float64 and twice the SIMD width; inputs are float32 or narrower. Sums are float64 (np.bincount in
# accounts/zonal.py). The carbon engine stays float64 (its sink is a difference of stocks that cancels,
# and credits tie its stocks and sinks to float64 recomputations; see carbon/stock.py::stock_difference).
PIXEL_DTYPE = np.float32


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid in a projected CRS (metres)."""

    crs: str
    transform: Affine
    width: int
    height: int
    chunk_px: int = 1024

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res_m(self) -> float:
        return abs(self.transform.a)

    @property
    def pixel_area_m2(self) -> float:
        """Area of one pixel in m² from the transform (as InVEST does)."""
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)

    @property
    def pixel_area_ha(self) -> float:
        return self.pixel_area_m2 / M2_PER_HA

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return (left, bottom, right, top)

    @property
    def chunks(self) -> dict[str, int]:
        return {"y": self.chunk_px, "x": self.chunk_px}

    def describe(self) -> dict:
        return {
            "crs": self.crs,
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
            "res_m": self.res_m,
        }
