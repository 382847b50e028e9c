"""The engine's typed results: per-zone sums (:class:`ZoneSums`), one computation's sums for every zone
kind (:class:`RunSums`), a run's summary (:class:`RunSummary`) and a whole valuation (:class:`Valuation`).

The lazy graph (:mod:`.graph`) names its per-zone sums by string channels (``"q:<service>"``,
``"v:<service>"``, ``"cls:v:<service>"``, ``"sv1"``, ``"carbon:sink"`` …). Those names stay inside
``engine/``: :class:`ZoneSums` is the only reader, and everything outside the engine (assembly of
rows, actual GEP, policy, audit, the GEP Monte Carlo) uses its typed accessors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..carbon import LUCC
from ..carbon.uncertainty import SufficientStats
from ..gep_uncertainty import PREFIX as GEP_MC_PREFIX

# --- the graph's channel names (produced by graph.build, read here only) -------------------------
QUANTITY = "q:"
VALUE = "v:"
NODATA = "nd:"                    # pixels of valid land cover whose service result lacks a declared layer
BY_TYPE = "cls:"
AREA = "area_ha"
SINK = "carbon:sink"
STOCK_T1 = "carbon:stock1"
STOCK_T2 = "carbon:stock2"
LUCC_SINK = "lucc_sink"
LUCC_AREA = "lucc_area"
VOLUME_AREA = ("sv1", "sv2")      # Σ A·V by species group at t1, t2
SPECIES_AREA = ("sa1", "sa2")     # Σ A by species group
TYPE_AREA = ("ca1", "ca2")        # Σ A by ecosystem-type position
MEASURES = {"quantity": QUANTITY, "value_cny": VALUE}


class EngineUsageError(ValueError):
    """A caller asked the engine's results for something they do not hold (a programming error)."""


@dataclass(frozen=True)
class ZoneSums:
    """Exact-coverage sums over every zone of one zone kind (county, township, parcel, a policy unit …).

    Arrays are indexed like :attr:`ids`. Sums by ecosystem type (:meth:`by_type`,
    :meth:`gep_mc_sums`) exist for the county (the region the GEP Monte Carlo runs over);
    :meth:`gep_mc_sums` also for the townships (their GEP intervals).
    """

    kind: str
    polygons: Any           # GeoDataFrame of the zones (grid CRS)
    id_field: str
    weights: Any            # accounts.zonal.ZoneWeights
    sums: Mapping[str, np.ndarray] = field(repr=False)

    def _get(self, channel: str, what: str) -> np.ndarray:
        try:
            return np.asarray(self.sums[channel])
        except KeyError:
            raise EngineUsageError(f"the {self.kind} sums hold no {what}") from None

    @property
    def ids(self) -> list[str]:
        return list(self.weights.ids)

    @property
    def n(self) -> int:
        return len(self.weights.ids)

    @property
    def area_ha(self) -> np.ndarray:
        """Valid area (both land covers not nodata) of each zone [ha]."""
        return self._get(AREA, "area")

    def quantity(self, service: str) -> np.ndarray:
        """Σ of the service's physical quantity per zone (unit: the service's ``quantity_unit``)."""
        return self._get(QUANTITY + service, f"quantity of '{service}'")

    def value_cny(self, service: str) -> np.ndarray:
        """Σ of the service's value per zone [CNY/yr]."""
        return self._get(VALUE + service, f"value of '{service}'")

    def nodata_px(self, service: str) -> np.ndarray:
        """Pixels (exact coverage) of valid land cover in each zone where the service has no result
        because a layer its SPEC declares holds no data (NaN, ±inf, declared nodata, a fill code)."""
        return self._get(NODATA + service, f"nodata count of '{service}'")

    def nodata_ha(self, service: str) -> np.ndarray:
        """:meth:`nodata_px` as area [ha]."""
        return self.nodata_px(service) * self.weights.grid.pixel_area_ha

    def by_type(self, service: str, measure: str = "value_cny") -> np.ndarray:
        """The service's ``measure`` (``"value_cny"`` or ``"quantity"``) by ecosystem-type position of t2
        (zones × positions; see ``EcosystemTypes.positions``)."""
        if measure not in MEASURES:
            raise EngineUsageError(f"measure must be one of {sorted(MEASURES)}, got '{measure}'")
        return self._get(BY_TYPE + MEASURES[measure] + service, f"{measure} of '{service}' by ecosystem type")

    @property
    def carbon_stock_t1_tc(self) -> np.ndarray:
        return self._get(STOCK_T1, "carbon stock at t1")

    @property
    def carbon_stock_t2_tc(self) -> np.ndarray:
        return self._get(STOCK_T2, "carbon stock at t2")

    @property
    def carbon_sink_tco2e_per_yr(self) -> np.ndarray:
        return self._get(SINK, "carbon sink")

    @property
    def sink_by_lucc(self) -> np.ndarray:
        """Net sink [t CO2e/yr] by land-use-change category (zones × categories, see ``carbon.LUCC``)."""
        return self._get(LUCC_SINK, "sink by land-use change")

    @property
    def area_by_lucc(self) -> np.ndarray:
        """Area [ha] by land-use-change category (zones × categories, see ``carbon.LUCC``)."""
        return self._get(LUCC_AREA, "area by land-use change")

    def lucc(self, zone: int = 0) -> dict[str, tuple[float, float]]:
        """Category name → (sink t CO2e/yr, area ha) of one zone."""
        s, a = self.sink_by_lucc[zone], self.area_by_lucc[zone]
        return {k: (float(s[v]), float(a[v])) for k, v in LUCC.items()}

    def type_area_ha(self, period: int) -> np.ndarray:
        """Area by ecosystem-type position at period 1 or 2 (zones × positions) [ha]."""
        return self._get(TYPE_AREA[self._period(period)], f"area by ecosystem type at t{period}")

    @staticmethod
    def _period(period: int) -> int:
        if period not in (1, 2):
            raise EngineUsageError(f"period must be 1 or 2, got {period}")
        return period - 1

    def sufficient_stats(self, dt_yr: float) -> SufficientStats:
        """The carbon Monte Carlo's sufficient statistics (IPCC Approach 2 over sums, not pixels)."""
        g = self._get
        return SufficientStats(g(VOLUME_AREA[0], "volume sums"), g(VOLUME_AREA[1], "volume sums"),
                               g(SPECIES_AREA[0], "species areas"), g(SPECIES_AREA[1], "species areas"),
                               g(TYPE_AREA[0], "type areas"), g(TYPE_AREA[1], "type areas"), float(dt_yr))

    @property
    def has_gep_mc_sums(self) -> bool:
        """Whether this zone kind's sums hold the GEP Monte Carlo channels (county, townships)."""
        return any(k.startswith(BY_TYPE + GEP_MC_PREFIX) for k in self.sums)

    def gep_mc_sums(self, zone: int = 0) -> dict[str, np.ndarray]:
        """The GEP Monte Carlo's channels (``gep_uncertainty.channels``) summed by type for one zone."""
        head = BY_TYPE + GEP_MC_PREFIX
        out = {k[len(head):]: np.asarray(v[zone], dtype=np.float64) for k, v in self.sums.items() if k.startswith(head)}
        if not out:
            raise EngineUsageError(f"the {self.kind} sums hold no GEP Monte Carlo channels")
        return out


@dataclass(frozen=True)
class RunSums:
    """One computation's sums for every zone kind, with the services that were computed."""

    zones: dict[str, ZoneSums]
    services: dict                # service key → services.base.ServiceResult (unit, details)

    def __getitem__(self, kind: str) -> ZoneSums:
        try:
            return self.zones[kind]
        except KeyError:
            raise EngineUsageError(f"no zone kind '{kind}' (have {sorted(self.zones)})") from None

    def service_unit(self, service: str) -> str:
        return self.services[service].quantity_unit

    @classmethod
    def from_computed(cls, computed: Mapping[str, Mapping], zones: Mapping[str, tuple], services: dict) -> "RunSums":
        """Wrap the graph's computed per-kind sums (``graph["zones"]`` after the compute)."""
        return cls({kind: ZoneSums(kind, gdf, id_field, w, computed[kind]) for kind, (gdf, w, id_field) in zones.items()},
                   services)


# --- the run's summary ------------------------------------------------------------------------------
_ABSENT = object()


class _Record:
    """A dataclass that reads from / writes to a JSON dict with the same keys in the same order;
    keys it does not know are kept (``extra``) so a field added elsewhere survives the round trip."""

    NESTED: ClassVar[dict[str, type]] = {}
    MAPS: ClassVar[dict[str, type]] = {}

    @classmethod
    def from_dict(cls, d: Mapping):
        kw, names = {}, [f.name for f in fields(cls) if f.name != "extra"]
        for n in names:
            if n not in d:
                continue
            v = d[n]
            if n in cls.NESTED and isinstance(v, Mapping):
                v = cls.NESTED[n].from_dict(v)
            elif n in cls.MAPS and isinstance(v, Mapping):
                v = {k: cls.MAPS[n].from_dict(x) for k, x in v.items()}
            kw[n] = v
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is _ABSENT:
                continue
            if isinstance(v, _Record):
                v = v.to_dict()
            elif f.name in self.MAPS and isinstance(v, Mapping):
                v = {k: x.to_dict() for k, x in v.items()}
            out[f.name] = v
        out.update(self.extra)
        return out


@dataclass
class ServiceTotal(_Record):
    quantity: float
    unit: str
    value_cny: float
    name_zh: str = _ABSENT
    category: str = _ABSENT
    used_share: float = _ABSENT
    actual_value_cny: float = _ABSENT
    nodata_px: float = _ABSENT     # pixels of valid land cover without a result (a declared layer holds no data)
    nodata_ha: float = _ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class CarbonSummary(_Record):
    net_sink_tco2e_per_yr: float
    ci95_tco2e_per_yr: list
    mc_mean_tco2e_per_yr: float
    mc_draws: int
    mc_seed: int
    approach1_ci95_pct: float | None
    stock_tc: float
    stock_t1_tc: float
    by_lucc_tco2e_per_yr: dict
    by_lucc_area_ha: dict
    forest_sink_tco2e_per_ha_yr: float
    extra: dict = field(default_factory=dict)


@dataclass
class GepSummary(_Record):
    MAPS: ClassVar[dict[str, type]] = {"by_service": ServiceTotal}

    total_cny: float
    by_service: dict            # service key → ServiceTotal
    price_year: int
    cny_per_km2: float
    per_capita_cny: float | None
    by_land_cover_cny: dict
    by_land_cover_quantity: dict
    uncertainty: dict | None = _ABSENT
    actual_total_cny: float = _ABSENT
    actual: dict = _ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class RunSummary(_Record):
    """A run's summary, typed; :meth:`to_dict` gives the dict the store, report and console read."""

    NESTED: ClassVar[dict[str, type]] = {"carbon": CarbonSummary, "gep": GepSummary}

    run_id: str
    region: str
    adcode: Any
    name_zh: str
    synthetic_inputs: bool
    period: list
    rules: dict
    area_km2: float
    carbon: CarbonSummary
    gep: GepSummary
    extent: dict
    population: int | None
    input_warnings: list = _ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class Valuation:
    """A computed (not stored) valuation: rows for the store, the typed summary, zone tables, the sums."""

    rows: dict
    summary: RunSummary
    tables: dict
    sums: RunSums
    extra: dict = field(default_factory=dict)    # further parts of the result (kept as they are)

    def as_result(self) -> dict:
        return {"rows": self.rows, "summary": self.summary.to_dict(), "tables": self.tables, **self.extra}


#: Rows a :class:`ColumnRows` turns into dicts at a time while it is iterated.
ROWS_PER_BATCH = 5000


class ColumnRows(Sequence):
    """Result rows held as columns (a list or a numpy array per field), read as dicts.

    ~200,000 service rows of a 10 m pilot with 18,000 parcels took ~160 MB as one dict per row; as
    columns they take ~15 MB, so a run's peak memory does not grow with its parcels (issue 17). Reading
    a row or a slice builds its dicts (numbers as Python floats, exactly the column's values); iterating
    builds them :data:`ROWS_PER_BATCH` at a time. Changing such a dict does not change the rows: replace
    a column with :meth:`set_column` (``accounts/actual.py``)."""

    def __init__(self, columns: dict[str, Any]):
        self._cols: dict[str, Any] = {}
        self._n = len(next(iter(columns.values()))) if columns else 0
        for name, values in columns.items():
            self.set_column(name, values)

    def __len__(self) -> int:
        return self._n

    def set_column(self, name: str, values) -> None:
        if len(values) != self._n:
            raise EngineUsageError(f"column '{name}' has {len(values)} values for {self._n} rows")
        self._cols[name] = values

    def column(self, name: str):
        return self._cols[name]

    def columns(self) -> dict[str, Any]:
        """Every column by name, in the rows' key order (e.g. for ``pandas.DataFrame``, no dict per row)."""
        return dict(self._cols)

    def _rows(self, sl: slice) -> list[dict]:
        names = list(self._cols)
        cols = [c[sl].tolist() if isinstance(c, np.ndarray) else list(c[sl]) for c in self._cols.values()]
        return [dict(zip(names, vals)) for vals in zip(*cols)]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._rows(i)
        j = i + self._n if i < 0 else i
        if not 0 <= j < self._n:
            raise IndexError(f"row {i} of {self._n}")
        return self._rows(slice(j, j + 1))[0]

    def __iter__(self):
        for start in range(0, self._n, ROWS_PER_BATCH):
            yield from self._rows(slice(start, start + ROWS_PER_BATCH))
