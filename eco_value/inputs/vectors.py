"""Reading a bureau's vector layers and tables with the right text encoding, and refusing garbled text.

Rule for a Shapefile's DBF text (the only format whose encoding is not fixed):
1. a ``.cpg`` beside the ``.shp`` names the code page (``936``/``GBK`` -> GBK, ``UTF-8`` ...);
2. else the encoding the caller declares (a field map's ``encoding``);
3. else detection: every non-ASCII value must decode as UTF-8 (-> UTF-8) or else as GBK (-> GBK).
The DBF is read byte-for-byte (GDAL's own recoding is switched off) and decoded strictly, so a wrong
code page is an error, never silent replacement characters. GeoPackage and FileGDB store Unicode.

Whatever the format, text that *looks* garbled is refused: GBK or UTF-8 bytes shown as Latin-1
(``ÄÏ±¦É½`` for 南宝山), UTF-8 bytes shown as GBK (``鍗楀疂灞`` for 南宝山), or replacement
characters (``锟斤拷``, ``\ufffd``). The error names the file and field, shows an example with its
repair, and says how to fix the source.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from ..errors import InputError, Problem

# .cpg contents -> Python codec
_CPG = {
    "936": "gbk", "cp936": "gbk", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030", "ansi 936": "gbk",
    "utf-8": "utf-8", "utf8": "utf-8", "65001": "utf-8",
    "1252": "cp1252", "cp1252": "cp1252", "ansi 1252": "cp1252",
    "iso-8859-1": "latin-1", "88591": "latin-1", "iso88591": "latin-1", "latin1": "latin-1",
}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN_HIGH = re.compile(r"[\u0080-\u00ff]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_LOST = ("\ufffd", "锟斤拷")


def is_text(s: pd.Series) -> bool:
    """Object or string dtype (pandas 3 reads text as ``str``)."""
    return s.dtype == object or pd.api.types.is_string_dtype(s)


def codec_of_cpg(text: str) -> str | None:
    t = text.strip().lower()
    if t in _CPG:
        return _CPG[t]
    if t.isdigit():
        return f"cp{t}"
    try:
        "".encode(t)
        return t
    except LookupError:
        return None


def _is_shapefile(path: Path) -> bool:
    return path.suffix.lower() == ".shp"


def detect_encoding(samples: list[bytes]) -> str | None:
    """UTF-8 if every sample decodes as UTF-8, else GBK if every sample decodes as GBK, else None."""
    for codec in ("utf-8", "gbk"):
        try:
            for s in samples:
                s.decode(codec)
            return codec
        except UnicodeDecodeError:
            continue
    return None


def read_vector(path: str | Path, *, layer: str | None = None, encoding: str | None = None,
                what: str = "layer") -> tuple[gpd.GeoDataFrame, str]:
    """Read a vector layer (Shapefile, GeoPackage, FileGDB) with its text decoded; returns the frame
    and the encoding used (``"native"`` for formats that store Unicode)."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), layer or what, "the file does not exist",
                                  "give the path of the bureau's file")])
    try:
        if not _is_shapefile(path):
            gdf = pyogrio.read_dataframe(path, layer=layer)
            used = "native"
        else:
            gdf, used = _read_shapefile(path, layer, encoding)
    except pyogrio.errors.DataLayerError:
        layers = ", ".join(str(x[0]) for x in pyogrio.list_layers(path))
        raise InputError([Problem("missing-layer", str(path), layer or what, f"no layer '{layer}' (layers: {layers})",
                                  "name the layer that holds the data")]) from None
    except pyogrio.errors.DataSourceError as exc:
        raise InputError([Problem("unreadable", str(path), layer or what, f"GDAL cannot open it ({exc})",
                                  "check the file is a complete Shapefile/GeoPackage/FileGDB")]) from None
    check_mojibake(gdf, str(path), used)
    return gdf, used


def _read_shapefile(path: Path, layer: str | None, declared: str | None) -> tuple[gpd.GeoDataFrame, str]:
    cpg = path.with_suffix(".cpg")
    if not cpg.exists():
        cpg = path.with_suffix(".CPG")
    # latin-1 maps every byte to one character: the DBF's bytes come through unchanged
    gdf = pyogrio.read_dataframe(path, layer=layer, encoding="ISO-8859-1")  # "latin-1" is not a GDAL name
    text_cols = [c for c in gdf.columns if c != "geometry" and is_text(gdf[c])]
    raw_names = {c: c.encode("latin-1") for c in gdf.columns if c != "geometry"}
    if cpg.exists():
        cpg_text = cpg.read_text("ascii", errors="replace")
        codec = codec_of_cpg(cpg_text)
        how = f"the .cpg file ({cpg.name}: '{cpg_text.strip()}')"
        if codec is None:
            raise InputError([Problem("bad-encoding", str(cpg), "cpg", f"unknown code page '{cpg_text.strip()}'",
                                      "write 936 (GBK) or UTF-8 into the .cpg")])
    elif declared:
        codec, how = declared, f"the declared encoding '{declared}'"
    else:
        samples = [v.encode("latin-1") for c in text_cols for v in gdf[c].dropna() if not str(v).isascii()]
        samples += [b for b in raw_names.values() if not b.isascii()]
        codec = detect_encoding(samples)
        how = "detection"
        if codec is None:
            raise InputError([Problem(
                "bad-encoding", str(path), "dbf",
                "the text is neither UTF-8 nor GBK and no .cpg declares its code page",
                "put a .cpg beside the .shp naming the code page (e.g. 936 for GBK), or set encoding in the field map")])
    problems = []
    renames = {}
    for c, raw in raw_names.items():
        try:
            renames[c] = raw.decode(codec)
        except UnicodeDecodeError:
            problems.append(_decode_problem(path, c, raw, codec, how))
    for c in text_cols:
        bad = []

        def dec(v, c=c, bad=bad):
            if v is None or (isinstance(v, float) and pd.isna(v)):
                return v
            try:
                return v.encode("latin-1").decode(codec)
            except UnicodeDecodeError:
                bad.append(v.encode("latin-1"))
                return v

        gdf[c] = gdf[c].map(dec)
        if bad:
            problems.append(_decode_problem(path, renames.get(c, c), bad[0], codec, how, len(bad)))
    if problems:
        raise InputError(problems)
    return gdf.rename(columns=renames), codec


def _decode_problem(path: Path, field: str, raw: bytes, codec: str, how: str, n: int = 1) -> Problem:
    guess = detect_encoding([raw])
    hint = f"; the bytes decode as {guess.upper()}" if guess and guess != codec else ""
    fix = (f"write {'936' if guess == 'gbk' else 'UTF-8'} into the .cpg beside the .shp" if guess
           else "give the right code page in a .cpg beside the .shp")
    return Problem("bad-encoding", str(path), field,
                   f"{n} value(s) are not valid {codec} (chosen by {how}), e.g. bytes {raw[:24]!r}{hint}", fix)


def repair_of(text: str) -> str | None:
    """If ``text`` looks garbled, the text it was meant to be (or ``"?"`` if lost); else None."""
    fixed = _repair(text)
    return fixed[0] if fixed else None


def _repair(text: str) -> tuple[str, str] | None:
    """(repaired text, the code page its bytes really are) for garbled text, ("?", "") if lost."""
    if any(m in text for m in _LOST):
        return "?", ""
    # GBK / UTF-8 bytes shown as Latin-1: each character becomes a run of 2-3 Latin-1 characters
    runs = _NON_ASCII_RUN.findall(text)
    if runs and min(map(len, runs)) >= 2 and _LATIN_HIGH.search(text) and not _CJK.search(text):
        for wrong in ("cp1252", "latin-1"):
            try:
                raw = text.encode(wrong)
            except UnicodeEncodeError:
                continue
            for right in ("utf-8", "gbk"):
                try:
                    fixed = raw.decode(right)
                except UnicodeDecodeError:
                    continue
                if _CJK.search(fixed):
                    return fixed, right
    if _CJK.search(text):
        try:
            fixed = text.encode("gbk").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return None
        if fixed != text and _CJK.search(fixed):
            return fixed, "utf-8"
    return None


def check_mojibake(df: pd.DataFrame, file: str, encoding: str) -> None:
    """Refuse a frame whose text (field names or values) looks garbled; see the module docstring.
    A field is refused when any value has lost characters, or at least half of its non-ASCII values
    repair to Chinese text."""
    problems = []
    names = [c for c in df.columns if c != "geometry"]
    bad_names = [(c, repair_of(str(c))) for c in names if not str(c).isascii()]
    bad_names = [(c, r) for c, r in bad_names if r]
    if bad_names:
        c, _ = bad_names[0]
        problems.append(_garbled(file, "field names", str(c), _repair(str(c)), len(bad_names), encoding))
    for c in names:
        if not is_text(df[c]):
            continue
        vals = [v for v in df[c].dropna().unique() if isinstance(v, str) and not v.isascii()]
        if not vals:
            continue
        reps = [(v, repair_of(v)) for v in vals]
        garbled = [(v, r) for v, r in reps if r]
        lost = [(v, r) for v, r in garbled if r == "?"]
        if lost or len(garbled) * 2 >= len(vals):
            v, _ = (lost or garbled)[0]
            problems.append(_garbled(file, str(c), v, _repair(v), len(garbled), encoding))
    if problems:
        raise InputError(problems)


def _garbled(file: str, field: str, example: str, repair: tuple[str, str], n: int, encoding: str) -> Problem:
    repaired, really = repair
    if repaired == "?":
        what = (f"{n} value(s) have lost characters (e.g. '{example}'): the text was converted with a wrong "
                "code page before it was stored")
        fix = "re-export the layer from the original data with the right encoding; the characters cannot be recovered"
        return Problem("garbled-text", file, field, what, fix)
    what = (f"{n} distinct value(s) look garbled (mojibake), e.g. '{example}' which reads '{repaired}' "
            f"as {really.upper()}")
    if encoding == "native":
        fix = (f"the text was garbled before this file was written ({really.upper()} bytes decoded with a wrong "
               "code page, then saved); re-export it from the original data with the right encoding")
    else:
        cpg = "936" if really == "gbk" else "UTF-8"
        fix = (f"the DBF's text is {really.upper()} but was decoded as {encoding}: write {cpg} into the .cpg "
               f"beside the .shp (or, without a .cpg, set encoding = \"{really}\" in the field map)")
    return Problem("garbled-text", file, field, what, fix)


def read_table(path: str | Path, *, encoding: str | None = None, what: str = "table") -> tuple[pd.DataFrame, str]:
    """A CSV table (text kept as text) with the encoding declared or detected (UTF-8, else GBK)."""
    path = Path(path)
    if not path.exists():
        raise InputError([Problem("missing-file", str(path), what, "the file does not exist",
                                  "give the path of the table")])
    raw = path.read_bytes()
    codec = encoding or detect_encoding([raw])
    if raw.startswith(b"\xef\xbb\xbf"):
        codec = "utf-8-sig"
    if codec is None:
        raise InputError([Problem("bad-encoding", str(path), what, "the text is neither UTF-8 nor GBK",
                                  "save the table as UTF-8 (or declare its encoding)")])
    try:
        df = pd.read_csv(io.StringIO(raw.decode(codec)), dtype=str, keep_default_na=False)
    except UnicodeDecodeError as exc:
        raise InputError([Problem("bad-encoding", str(path), what, f"not valid {codec} ({exc})",
                                  "save the table as UTF-8 (or declare its encoding)")]) from None
    check_mojibake(df, str(path), codec)
    return df, codec


def missing_fields(df: pd.DataFrame, wanted: dict[str, str], file: str, layer: str, fieldmap: str) -> list[Problem]:
    """One problem listing every mapped field the data lack (with the fields they do have)."""
    missing = [f"{role} -> {name}" for role, name in wanted.items() if name and name not in df.columns]
    if not missing:
        return []
    have = ", ".join(c for c in df.columns if c != "geometry")
    return [Problem("missing-field", file, layer,
                    f"{len(missing)} mapped field(s) not in the data: {', '.join(missing)} (the data have: {have})",
                    f"edit the field map ({fieldmap}) so each role names a field of the data, or set it to \"\" "
                    "if the data do not have it")]
