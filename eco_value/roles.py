"""Layer roles and periods: how the engine names its inputs, independent of calendar years.

A raster layer of a catalog is keyed by its role, and by its period when it belongs to one of the
two inventory dates: ``land_cover@t1``, ``land_cover@t2``, ``volume@t1``, ``forest_type@t2``, ...
The years of ``t1`` and ``t2`` are the catalog's ``period = [first, second]``, so a run over any pair
of years needs no code change.
"""

from __future__ import annotations

T1 = "t1"
T2 = "t2"
PERIODS = (T1, T2)

LAND_COVER = "land_cover"
FOREST_TYPE = "forest_type"
VOLUME = "volume"
STAND_AGE = "stand_age"
CHANGE_EVENT = "change_event"   # engine id of the change recorded between t1 and t2 (accounting_rules/change_events.toml)
PERIODIC_ROLES = (LAND_COVER, FOREST_TYPE, VOLUME, STAND_AGE, CHANGE_EVENT)


def key(role: str, period: str | None = None) -> str:
    """``key("land_cover", "t2") == "land_cover@t2"``; ``key("dem") == "dem"``."""
    if period is None:
        return role
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    return f"{role}@{period}"


def split(layer_key: str) -> tuple[str, str | None]:
    """``"volume@t1"`` → ``("volume", "t1")``; ``"dem"`` → ``("dem", None)``."""
    role, _, period = layer_key.partition("@")
    return role, (period or None)


def year_of(period: str, years: tuple[int, int]) -> int:
    """The calendar year of ``t1``/``t2`` for a catalog period ``(first, second)``."""
    return years[PERIODS.index(period)]


LAND_COVER_T1 = key(LAND_COVER, T1)
LAND_COVER_T2 = key(LAND_COVER, T2)
FOREST_TYPE_T1 = key(FOREST_TYPE, T1)
FOREST_TYPE_T2 = key(FOREST_TYPE, T2)
VOLUME_T1 = key(VOLUME, T1)
VOLUME_T2 = key(VOLUME, T2)
STAND_AGE_T1 = key(STAND_AGE, T1)
CHANGE_EVENT_T2 = key(CHANGE_EVENT, T2)
