"""Class schemes of categorical layers.

CLCD: China Land Cover Dataset, Yang J. & Huang X. (2021) "The 30 m annual land cover dataset and
its dynamics in China from 1990 to 2019", Earth Syst. Sci. Data 13, 3907-3925, codes 1-9.
pilot_species: forest species groups of the pilot inventory (0 = not forest).
"""

from __future__ import annotations

CLCD: dict[str, int] = {
    "cropland": 1,
    "forest": 2,
    "shrub": 3,
    "grassland": 4,
    "water": 5,
    "snow": 6,
    "barren": 7,
    "impervious": 8,
    "wetland": 9,
}
CLCD_CODES: dict[int, str] = {v: k for k, v in CLCD.items()}
CLCD_LABELS_ZH = {
    "cropland": "耕地", "forest": "林地", "shrub": "灌木", "grassland": "草地", "water": "水体",
    "snow": "冰雪", "barren": "裸地", "impervious": "不透水面", "wetland": "湿地",
}

PILOT_SPECIES: dict[int, str] = {
    0: "none",
    1: "cunninghamia",
    2: "cryptomeria",
    3: "pinus_massoniana",
    4: "cupressus",
    5: "alnus",
    6: "broadleaf",
    7: "bamboo",
    8: "shrub",
}

SCHEMES: dict[str, dict[int, str]] = {"CLCD": CLCD_CODES, "pilot_species": PILOT_SPECIES}
