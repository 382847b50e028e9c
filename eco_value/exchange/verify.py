"""Offline verifier of eco-value export bundles, for exchange operators.

Stand-alone on purpose: it imports nothing else of eco-value (only the standard library, jsonschema
and PyNaCl), so an exchange can copy this one file and the schemas and run it. It trusts nothing in
the bundle:

1. the signature over manifest.json's exact bytes is checked first, against the key the exchange
   already holds (manifest and signature are read with a size cap); nothing else is opened before it holds;
2. only then are files opened, and only the ones the manifest lists, each a regular file inside the
   bundle (no symbolic links, FIFOs, sockets or devices; no ``..``, absolute or duplicated paths);
   every file present in the bundle must be listed;
3. each file is read once, in chunks, with the size the manifest declares as a hard limit (a file
   whose size on disk differs is refused before it is read) and its SHA-256 compared;
4. records are validated against the verifier's own schemas, and every total is recomputed.

Every problem is reported as (check, path, message); a hostile or malformed bundle gives a list,
never a traceback and never a hang.

    python -m eco_value.exchange.verify BUNDLE_DIR --public-key issuer.pub [--holdings held.jsonl]

Exit 0 only when every check holds; otherwise exit 2 and one line per problem.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import hashlib
import io
import json
import math
import os
import re
import stat
import sys
import unicodedata
from pathlib import Path
from typing import NamedTuple

SERIAL_RE = re.compile(r"^ECV1-([0-9]{6})-([A-Za-z0-9]+)-([0-9]{4})-([0-9]{12})-([0-9]{12})-([0-9]{2})$", re.ASCII)
SCHEMA_FILES = {"credit_block": "credit_block.v1.json", "issuance": "issuance.v1.json", "gep_statement": "gep_statement.v1.json"}
CSV_KEYS = {"credit_block": "serial", "issuance": "issuanceId"}
BUNDLE_FORMAT = "eco-value-bundle/1"
FORMAT_V2 = "eco-value-bundle/2"      # CAD Trust records: unit, issuance and project (exchange_export/schemas/v2)
# what each bundle format holds: record kind -> the verifier's own schema (under its schema folder), the
# schema's name inside the bundle, the CSV key column; which kind holds the unit blocks
PROFILES = {
    BUNDLE_FORMAT: {"schemas": dict(SCHEMA_FILES), "in_bundle": {k: f"schemas/{fn}" for k, fn in SCHEMA_FILES.items()},
                    "csv_keys": dict(CSV_KEYS), "blocks": "credit_block"},
    FORMAT_V2: {"schemas": {"unit": "v2/unit.v2.json", "issuance": "v2/issuance.v2.json", "project": "v2/project.v2.json"},
                "in_bundle": {"unit": "schemas/unit.v2.json", "issuance": "schemas/issuance.v2.json",
                              "project": "schemas/project.v2.json"},
                "csv_keys": {"unit": "serial", "issuance": "id", "project": "projectId"}, "blocks": "unit"},
}
BUFFER_STATUSES = ("buffer", "Buffer")   # /1 and /2 (CAD Trust case)
SIGNED = ("manifest.json", "manifest.sig")      # the two files the manifest cannot list
TOL = 1e-6                                      # relative tolerance of recomputed sums (float rounding only)

# Limits of the verifier itself (not accounting parameters): they bound what a hostile bundle can
# make it read or hold. Legitimate bundles stay far below them (a 25,000-block bundle's manifest is
# ~2 KB, its longest record line ~5 MB).
MAX_MANIFEST_BYTES = 16 << 20
MAX_SIGNATURE_BYTES = 4 << 10
MAX_KEY_BYTES = 4 << 10
MAX_SCHEMA_BYTES = 1 << 20
MAX_LINE_BYTES = 64 << 20
MAX_INT_DIGITS = 18                 # integers in records and holdings fit int64 (serial positions, t CO2e)
MAX_ENTRIES = 100_000               # directory entries walked before giving up ("too many files")
MAX_PROBLEMS_PER_KIND = 200         # per (check, path); the rest are counted in one line
CHUNK = 1 << 20


class Problem(NamedTuple):
    check: str
    path: str
    message: str


class NotRegular(Exception):
    """A path in the bundle is not a regular file reached through real folders (symlink, FIFO, ...)."""


class _Problems:
    def __init__(self):
        self.items: list[Problem] = []
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, check: str, path: str, message: str) -> None:
        k = (check, path)
        self.counts[k] = self.counts.get(k, 0) + 1
        if self.counts[k] <= MAX_PROBLEMS_PER_KIND:
            self.items.append(Problem(check, _show(path), _show(message)))

    def result(self) -> list[Problem]:
        more = [Problem(c, _show(p), f"… and {n - MAX_PROBLEMS_PER_KIND} more problem(s) of this kind")
                for (c, p), n in self.counts.items() if n > MAX_PROBLEMS_PER_KIND]
        return self.items + more


def _show(s: str, limit: int = 500) -> str:
    """Printable text: undecodable bytes and control characters escaped (no terminal escapes), length capped."""
    s = str(s).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if not s.isprintable():
        s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s if len(s) <= limit else s[:limit] + "…"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def own_schema_dir() -> Path:
    here = Path(__file__).resolve()
    for cand in (here.parent.parent / "_data" / "exchange_export" / "schemas",       # installed wheel
                 here.parent.parent.parent / "exchange_export" / "schemas",          # source checkout
                 here.parent / "schemas"):                                            # copied beside this file
        if cand.is_dir():
            return cand
    raise FileNotFoundError("the verifier's own schemas were not found beside it")


def _digits(s: str) -> str:
    return "".join(str(int(ch, 36)) for ch in s.upper() if ch.isalnum())


def serial_ok(serial: str) -> bool:
    m = SERIAL_RE.match(serial)
    if not m:
        return False
    body = serial.rsplit("-", 1)[0]
    return int(_digits(body) + m.group(6)) % 97 == 1


# ---- opening files: regular files inside the bundle only ------------------------------------------------

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_AT = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd and os.stat in os.supports_follow_symlinks


def open_inside(root: Path, rel: str) -> tuple[int, int]:
    """Open ``root/rel`` for reading as (fd, size on disk). Every component is checked without following
    symbolic links: intermediate ones must be real folders, the last a regular file, re-checked on the
    open descriptor (O_NONBLOCK: opening a FIFO never waits for a writer). Raises NotRegular or OSError."""
    parts = rel.split("/")
    if not _AT:                                              # no openat (Windows): lstat each component
        p = Path(root)
        for i, part in enumerate(parts):
            p = p / part
            mode = os.lstat(p).st_mode
            want = stat.S_ISREG if i == len(parts) - 1 else stat.S_ISDIR
            if not want(mode):
                raise NotRegular(f"{'/'.join(parts[:i + 1])} is a {_kind(mode)}, not a "
                                 f"{'regular file' if want is stat.S_ISREG else 'real folder'} inside the bundle")
        fd = os.open(p, _FILE_FLAGS)
        return _checked_fd(fd, rel)
    dfd = os.open(root, _DIR_FLAGS)                          # the bundle folder itself is the user's own path
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            mode = os.stat(part, dir_fd=dfd, follow_symlinks=False).st_mode
            if not (stat.S_ISREG(mode) if last else stat.S_ISDIR(mode)):
                raise NotRegular(f"{'/'.join(parts[:i + 1])} is a {_kind(mode)}, not a "
                                 f"{'regular file' if last else 'real folder'} inside the bundle")
            fd = os.open(part, _FILE_FLAGS if last else (_DIR_FLAGS | _NOFOLLOW), dir_fd=dfd)
            os.close(dfd)
            dfd = fd
            if last:
                dfd = -1
                return _checked_fd(fd, rel)
    finally:
        if dfd >= 0:
            os.close(dfd)
    raise NotRegular(f"{rel}: empty path")


def open_regular(path: str | Path) -> tuple[int, int]:
    """Open one of the user's own files (the trusted key, the holdings): symbolic links are followed, but it
    must be a regular file (O_NONBLOCK: a FIFO never blocks the open). Raises NotRegular or OSError."""
    return _checked_fd(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
                               | getattr(os, "O_CLOEXEC", 0)), str(path))


def _checked_fd(fd: int, rel: str) -> tuple[int, int]:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):                        # replaced between the check and the open
        os.close(fd)
        raise NotRegular(f"{rel} is a {_kind(st.st_mode)}, not a regular file")
    return fd, st.st_size


class _Limited(io.RawIOBase):
    """Reads an fd up to ``limit`` bytes, hashing as it goes; notes when the file holds more."""

    def __init__(self, fd: int, limit: int):
        self.fd, self.limit, self.n, self.grew = fd, limit, 0, False
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        room = self.limit - self.n
        if room <= 0:
            self.grew = self.grew or bool(os.read(self.fd, 1))
            return 0
        data = os.read(self.fd, min(len(buf), room, CHUNK))
        buf[:len(data)] = data
        self.n += len(data)
        self.sha.update(data)
        return len(data)

    def close(self) -> None:
        if not self.closed and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


def _lines(reader: io.BufferedReader):
    """Lines of at most MAX_LINE_BYTES (ValueError beyond)."""
    while True:
        line = reader.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(f"a line longer than {MAX_LINE_BYTES} bytes")
        yield line


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"{s} is out of range")
    return v


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer {s[:30]}… has more than {MAX_INT_DIGITS} digits")
    return int(s)


def _loads(b: bytes | str):
    """Strict JSON: no NaN/Infinity, no numbers beyond float or int64 range (ValueError, RecursionError)."""
    return json.loads(b, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int)


def _read_small(root: Path, rel: str, cap: int, out: _Problems, too_large: str) -> bytes | None:
    try:
        fd, size = open_inside(root, rel)
    except FileNotFoundError:
        out.add("missing-manifest", rel, f"{rel} is missing: a bundle needs manifest.json and manifest.sig (re-export it)")
        return None
    except NotRegular as exc:
        out.add("not-regular-file", rel, str(exc))
        return None
    except OSError as exc:
        out.add("unreadable", rel, f"cannot open: {exc.strerror or exc}")
        return None
    with _Limited(fd, cap) as r:
        if size > cap:
            out.add(too_large, rel, f"{size} bytes; the verifier reads at most {cap} bytes of it")
            return None
        data = io.BufferedReader(r).read()
        if r.grew:
            out.add(too_large, rel, f"grew beyond {cap} bytes while being read")
            return None
    return data


# ---- schema validation, fast on repetitive records ---------------------------------------------------

_FLAT_OBJECT = {"$schema", "$id", "title", "description", "type", "additionalProperties", "required", "properties"}
_FLAT_ARRAY = {"title", "description", "type", "items", "minItems", "maxItems"}
CACHE_MAX = 4096                    # verdicts cached per field; fields with ever-new values stop caching


def _scalar_key(v):
    return (type(v), v) if v is None or isinstance(v, (str, int, float, bool)) else None


def _predicate(full, schema):
    """``value -> bool`` with exactly the verdict of ``full.evolve(schema=schema).is_valid``: flat object and
    array schemas are checked keyword by keyword, every other subschema by jsonschema itself, its verdict
    cached by value (records of one bundle repeat most fields: issuance, dates, methodology, ...)."""
    if isinstance(schema, dict) and schema.get("type") == "object" and set(schema) <= _FLAT_OBJECT \
            and schema.get("additionalProperties", True) in (True, False):
        props = {k: _predicate(full, sub) for k, sub in schema.get("properties", {}).items()}
        required, closed = set(schema.get("required", ())), schema.get("additionalProperties") is False

        def obj(v) -> bool:
            if not isinstance(v, dict) or not required <= v.keys() or (closed and not v.keys() <= props.keys()):
                return False
            return all(props[k](x) for k, x in v.items() if k in props)
        return obj
    if isinstance(schema, dict) and schema.get("type") == "array" and set(schema) <= _FLAT_ARRAY:
        item = _predicate(full, schema.get("items", {}))
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")

        def arr(v) -> bool:
            return isinstance(v, list) and len(v) >= lo and (hi is None or len(v) <= hi) and all(item(x) for x in v)
        return arr
    check = full.evolve(schema=schema).is_valid
    cache: dict = {}

    def leaf(v) -> bool:
        k = _scalar_key(v)
        if k is None:
            return check(v)
        got = cache.get(k)
        if got is None:
            got = check(v)
            if len(cache) < CACHE_MAX:
                cache[k] = got
        return got
    return leaf


class _Validator:
    """A record's schema errors: none when the fast verdict is 'valid', else jsonschema's own messages."""

    def __init__(self, full):
        self.full, self.valid = full, _predicate(full, full.schema)

    def iter_errors(self, r):
        return iter(()) if self.valid(r) else self.full.iter_errors(r)


# ---- the manifest ----------------------------------------------------------------------------------------

def _path_problem(rel: str) -> str | None:
    if not rel:
        return "empty path"
    if "\\" in rel:
        return "contains a backslash (paths are '/'-separated)"
    if not rel.isprintable():
        return "contains control characters"
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel):
        return "absolute path: it points outside the bundle"
    parts = rel.split("/")
    if ".." in parts:
        return "'..' points outside the bundle"
    if "" in parts or "." in parts:
        return "not a normal path (empty or '.' component)"
    if rel in SIGNED:
        return "manifest.json and manifest.sig cannot list themselves"
    return None


class _Entry(NamedTuple):
    sha: str
    size: int


def _parse_manifest(mbytes: bytes, out: _Problems) -> tuple[dict | None, dict[str, _Entry], set[str]]:
    """The manifest, its readable file entries, and every path it lists (for the unlisted-file check)."""
    dups: list[str] = []

    def pairs(kv):
        d: dict = {}
        for k, v in kv:
            if k in d:
                dups.append(k)
            d[k] = v
        return d

    try:
        m = json.loads(mbytes, object_pairs_hook=pairs, parse_constant=_reject_constant,
                       parse_float=_parse_float, parse_int=_parse_int)
    except (ValueError, RecursionError) as exc:
        out.add("bad-manifest", "manifest.json", f"not valid JSON ({exc})")
        return None, {}, set()
    if not isinstance(m, dict):
        out.add("bad-manifest", "manifest.json", f"must be a JSON object, not {type(m).__name__}")
        return None, {}, set()
    if m.get("bundle_format") not in PROFILES:
        out.add("unknown-format", "manifest.json", f"bundle format {_show(repr(m.get('bundle_format')), 80)} is not one this "
                f"verifier reads ({', '.join(PROFILES)}); use a verifier of the bundle's version")
        return None, {}, set()
    files, sizes = m.get("files"), m.get("file_sizes")
    if not isinstance(files, dict):
        out.add("bad-manifest", "manifest.json", f"'files' must be an object of path: SHA-256, not {type(files).__name__}")
        return None, {}, set()
    if not isinstance(sizes, dict):
        out.add("bad-manifest", "manifest.json", f"'file_sizes' must be an object of path: bytes, not {type(sizes).__name__} "
                "(bundles without declared sizes cannot be read safely; re-export with a current eco-value)")
        sizes = {}
    for k in sorted(set(dups)):
        if k in files or k in sizes:
            out.add("duplicate-path", k, "listed more than once in the manifest (which hash or size holds?)")
        else:
            out.add("bad-manifest", "manifest.json", f"key {k!r} appears more than once")
    for rel in sorted(set(sizes) - set(files)):
        out.add("bad-manifest", rel, "has a size in 'file_sizes' but no hash in 'files'")
    listed: set[str] = set()
    entries: dict[str, _Entry] = {}
    seen: dict[str, str] = {}
    for rel in sorted(files):
        why = _path_problem(rel)
        if why:
            out.add("bad-path", rel, f"{why}; manifest paths must be relative, '/'-separated and inside the bundle")
            continue
        listed.add(rel)
        folded = unicodedata.normalize("NFC", rel).casefold()
        if folded in seen:
            out.add("duplicate-path", rel, f"same file as {seen[folded]} on a case-insensitive or normalising file system")
            continue
        seen[folded] = rel
        if rel in dups:
            continue
        h, n = files[rel], sizes.get(rel)
        if not (isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h)):
            out.add("bad-manifest", rel, f"hash must be 64 lowercase hex digits (SHA-256), not {h!r}")
            continue
        if rel not in sizes:
            if isinstance(m.get("file_sizes"), dict):
                out.add("bad-manifest", rel, "no declared size in 'file_sizes'")
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            out.add("bad-manifest", rel, f"declared size must be a whole number of bytes >= 0, not {n!r}")
            continue
        entries[rel] = _Entry(h, n)
    return m, entries, listed


def _unlisted(root: Path, listed: set[str], out: _Problems) -> None:
    """Every file present must be listed; nothing is opened or followed (lstat only)."""
    prefixes = {"/".join(r.split("/")[:i]) for r in listed for i in range(1, r.count("/") + 1)}
    stack, walked = [""], 0
    while stack:
        d = stack.pop()
        try:
            with os.scandir(root / d if d else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.add("unreadable", d or ".", f"cannot list the folder: {exc.strerror or exc}")
            continue
        if d and not entries and d not in prefixes:
            out.add("unlisted-file", d, "an empty folder the manifest does not list anything in (remove it)")
        for e in entries:
            walked += 1
            if walked > MAX_ENTRIES:
                out.add("too-many-files", ".", f"more than {MAX_ENTRIES} entries in the bundle; stopped looking")
                return
            rel = f"{d}/{e.name}" if d else e.name
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except OSError:
                continue                                     # vanished while walking
            if stat.S_ISDIR(mode):
                stack.append(rel)
            elif rel not in listed and rel not in SIGNED:
                out.add("unlisted-file", rel, f"a {_kind(mode)} the manifest does not list; every file of a bundle must "
                        "be listed (remove it, or re-export the bundle)")


# ---- reading listed files --------------------------------------------------------------------------------

def _read_listed(root: Path, rel: str, ent: _Entry, out: _Problems, consume) -> object:
    """Open one listed file safely, read it once within its declared size, hash it; ``consume(reader)``
    parses it on the way. Returns what ``consume`` returned, or None when the file cannot be trusted."""
    try:
        fd, size = open_inside(root, rel)
    except FileNotFoundError:
        out.add("missing-file", rel, "listed in the manifest but missing")
        return None
    except NotRegular as exc:
        out.add("not-regular-file", rel, f"{exc}; only regular files are read")
        return None
    except OSError as exc:
        out.add("unreadable", rel, f"cannot open: {exc.strerror or exc}")
        return None
    with _Limited(fd, ent.size) as raw:
        if size != ent.size:
            out.add("size-mismatch", rel, f"{size} bytes on disk, the manifest declares {ent.size} (file changed); not read")
            return None
        reader = io.BufferedReader(raw, CHUNK)
        try:
            got = consume(reader)
        except (ValueError, csv.Error, RecursionError) as exc:   # too long a line, undecodable text, ...
            got, err = None, exc
        else:
            err = None
        while reader.read(CHUNK):                                  # hash whatever the parser left
            pass
        if raw.grew or raw.n != ent.size:
            out.add("size-mismatch", rel, f"changed size while being read (manifest: {ent.size} bytes)")
            return None
        if raw.sha.hexdigest() != ent.sha:
            out.add("hash-mismatch", rel, "SHA-256 differs from the manifest (file changed)")
            return None
    if err is not None:
        out.add("bad-record", rel, f"cannot be read: {err}")
        return None
    return got


def _drain(reader) -> bool:
    while reader.read(CHUNK):
        pass
    return True


def _read_json_small(reader):
    data = reader.read(MAX_SCHEMA_BYTES + 1)
    if len(data) > MAX_SCHEMA_BYTES:
        raise ValueError(f"more than {MAX_SCHEMA_BYTES} bytes")
    return _loads(data)


def _jsonl_consumer(kind: str, validator, keep, ckey: str | None = None):
    """Parse JSON Lines: every line a JSON object valid against the verifier's schema. Returns
    (line count, key of every record for the CSV comparison, compact form of each valid record, problems)."""
    ckey = ckey or CSV_KEYS.get(kind)

    def consume(reader):
        n, keys, valid, probs = 0, [], [], []
        for n, line in enumerate(_lines(reader), 1):
            try:
                r = _loads(line)
            except (ValueError, RecursionError) as exc:
                probs.append(("bad-record", f"line {n}: not JSON ({exc})"))
                keys.append(None)
                continue
            keys.append(r.get(ckey) if ckey and isinstance(r, dict) else None)
            errs = list(validator.iter_errors(r))
            for e in errs[:5]:
                where = "/".join(str(x) for x in e.absolute_path) or "(record)"
                probs.append(("schema-invalid", f"line {n}: {where}: {_show(e.message, 200)}"))
            if not errs:
                valid.append(keep(r, n))
        return n, keys, valid, probs
    return consume


def _csv_consumer(kind: str, ckey: str | None = None):
    """CSV rows: (row count, the key column or None when absent)."""
    ckey = ckey or CSV_KEYS.get(kind)

    def consume(reader):
        rows = csv.reader(line.decode("utf-8") for line in _lines(reader))
        header = next(rows, [])
        col = header.index(ckey) if ckey in header else None
        n, keys = 0, []
        for n, row in enumerate(rows, 1):
            if col is not None:
                keys.append(row[col] if col < len(row) else None)
        return n, (keys if col is not None else None)
    return consume


# ---- holdings --------------------------------------------------------------------------------------------

def _holding_problem(h) -> str | None:
    if not isinstance(h, dict):
        return f"must be a JSON object (a credit block), not {type(h).__name__}"
    s, e = h.get("unitBlockStart"), h.get("unitBlockEnd")
    for k, v in (("unitBlockStart", s), ("unitBlockEnd", e)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return f"{k} must be a whole number >= 1, not {v!r}"
    if s > e:
        return f"unitBlockStart {s} > unitBlockEnd {e}"
    if "parcels" in h and not (isinstance(h["parcels"], list) and all(isinstance(p, str) for p in h["parcels"])):
        return "parcels must be a list of parcel ids"
    if "vintageYear" in h and (isinstance(h["vintageYear"], bool) or not isinstance(h["vintageYear"], int)):
        return f"vintageYear must be a whole year, not {h['vintageYear']!r}"
    for k in ("regionAdcode", "issuanceId", "serial"):
        if k in h and not isinstance(h[k], str):
            return f"{k} must be text, not {h[k]!r}"
    return None


def read_public_key(path: str | Path) -> tuple[str | None, list[Problem]]:
    """The trusted key from a small regular file (hex), or the problems reading it."""
    out = _Problems()
    p = Path(path)
    data = None
    try:
        fd, size = open_regular(p)
        with _Limited(fd, MAX_KEY_BYTES) as r:
            data = io.BufferedReader(r).read()
            if size > MAX_KEY_BYTES or r.grew:
                out.add("bad-public-key", str(p), f"more than {MAX_KEY_BYTES} bytes: not a public key file")
    except FileNotFoundError:
        out.add("bad-public-key", str(p), "does not exist: give the file with the issuer's public key (hex), "
                "obtained from the issuer out of band (`eco-value keys export --out FILE`)")
    except NotRegular as exc:
        out.add("bad-public-key", str(p), f"{exc}: give the key file itself")
    except OSError as exc:
        out.add("bad-public-key", str(p), f"cannot be read: {exc.strerror or exc}")
    probs = out.result()
    if probs or data is None:
        return None, probs
    try:
        return data.decode("ascii").strip(), []
    except UnicodeDecodeError:
        return None, [Problem("bad-public-key", _show(str(p)), "not text: a public key file holds 64 hex digits")]


def read_holdings(path: str | Path) -> tuple[list[dict], list[Problem]]:
    """Credit blocks the importer already holds (JSON Lines), or the problems with each line."""
    out = _Problems()
    p, label = Path(path), str(path)
    held: list[dict] = []
    try:
        fd, size = open_regular(p)
    except FileNotFoundError:
        out.add("bad-holdings", label, "does not exist: give the JSON Lines file of credit blocks you already hold")
        return [], out.result()
    except NotRegular as exc:
        out.add("bad-holdings", label, f"{exc}: give the JSON Lines file itself")
        return [], out.result()
    except OSError as exc:
        out.add("bad-holdings", label, f"cannot be read: {exc.strerror or exc}")
        return [], out.result()
    with _Limited(fd, size) as r:
        try:
            for i, line in enumerate(_lines(io.BufferedReader(r, CHUNK)), 1):
                if not line.strip():
                    continue
                try:
                    h = _loads(line)
                except (ValueError, RecursionError) as exc:
                    out.add("bad-holdings", label, f"line {i}: not JSON ({exc})")
                    continue
                why = _holding_problem(h)
                if why:
                    out.add("bad-holdings", label, f"line {i}: {why}")
                else:
                    held.append(h)
        except ValueError as exc:
            out.add("bad-holdings", label, f"cannot be read: {exc}")
    return held, out.result()


# ---- the verifier ----------------------------------------------------------------------------------------

class _Block(NamedTuple):
    line: int
    serial: str
    start: int
    end: int
    count: int
    vintage: int
    status: str
    owner: str
    issuance: str
    region: str
    parcels: tuple
    start_date: str
    end_date: str


def _keep_block(r: dict, n: int) -> _Block:
    return _Block(n, r["serial"], r["unitBlockStart"], r["unitBlockEnd"], r["unitCount"], r["vintageYear"],
                  sys.intern(r["unitStatus"]), sys.intern(r["unitOwner"]), sys.intern(r["issuanceId"]),
                  sys.intern(r["regionAdcode"]), tuple(sys.intern(p) for p in r["parcels"]),
                  sys.intern(r["startDate"]), sys.intern(r["endDate"]))


def _keep_unit_v2(r: dict, n: int) -> _Block:
    """A CAD Trust unit (/2) as a block: string bounds as numbers; the monitoring dates come from its issuance."""
    return _Block(n, r["serial"], int(r["unitBlockStart"]), int(r["unitBlockEnd"]), r["unitCount"], r["vintageYear"],
                  sys.intern(r["unitStatus"]), sys.intern(r["unitOwner"]), sys.intern(r["issuanceId"]),
                  sys.intern(r["regionAdcode"]), tuple(sys.intern(p) for p in r["parcels"]), "", "")


def _keep_issuance_v2(r: dict, n: int) -> tuple[int, dict]:
    return n, {**r, "issuanceId": r["id"]}


def verify(bundle: str | Path, public_key_hex: str | None, holdings: list | None = None) -> list[Problem]:
    """Return every problem as (check, path, message); an empty list means the bundle verifies."""
    out = _Problems()
    try:
        _verify(Path(bundle), public_key_hex, holdings, out)
    except RecursionError as exc:           # deeply nested JSON in a validator; never a traceback
        out.add("bad-record", ".", f"too deeply nested to check ({exc})")
    return out.result()


def _verify(b: Path, public_key_hex: str | None, holdings: list | None, out: _Problems) -> None:
    import jsonschema
    from nacl.exceptions import BadSignatureError, CryptoError
    from nacl.signing import VerifyKey

    # 0. the folder and the trusted key
    try:
        if not stat.S_ISDIR(os.stat(b).st_mode):
            out.add("missing-bundle", str(b), "not a folder: give the bundle's folder")
            return
    except OSError:
        out.add("missing-bundle", str(b), "does not exist")
        return
    if not public_key_hex:
        out.add("no-trusted-key", "--public-key", "no trusted issuer key given (--public-key FILE); the bundle's own key "
                "proves nothing")
        return
    try:
        vk = VerifyKey(bytes.fromhex(public_key_hex.strip()))
    except (ValueError, TypeError, CryptoError) as exc:
        out.add("bad-public-key", "--public-key", f"not an Ed25519 public key in hex (64 hex digits): {exc}")
        return
    # 1. the signature over the manifest's exact bytes, before anything else is opened
    mbytes = _read_small(b, "manifest.json", MAX_MANIFEST_BYTES, out, "manifest-too-large")
    sbytes = _read_small(b, "manifest.sig", MAX_SIGNATURE_BYTES, out, "bad-signature")
    if mbytes is None or sbytes is None:
        return
    try:
        vk.verify(mbytes, bytes.fromhex(sbytes.decode("ascii").strip()))
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        out.add("bad-signature", "manifest.sig", "not a valid signature of manifest.json by the trusted issuer key "
                "(manifest changed, or signed by another key); nothing else was read")
        return
    # 2. the manifest's structure and paths; every file present must be listed
    manifest, entries, listed = _parse_manifest(mbytes, out)
    if manifest is None:
        return
    _unlisted(b, listed, out)
    prof = PROFILES[manifest["bundle_format"]]
    v2 = manifest["bundle_format"] == FORMAT_V2
    kinds, ckeys_of, block_kind = prof["schemas"], prof["csv_keys"], prof["blocks"]
    blocks_rel = f"records/{block_kind}s.jsonl"
    # 3. the verifier's own schemas
    try:
        sdir = own_schema_dir()
        own = {k: json.loads((sdir / fn).read_text(encoding="utf-8")) for k, fn in kinds.items()}
    except (OSError, ValueError) as exc:
        out.add("verifier-install", "schemas", f"the verifier's own schemas cannot be read ({exc}); reinstall it")
        return
    validators = {k: _Validator(jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker()))
                  for k, s in own.items()}
    # 4. every listed file, once, within its declared size; records parsed on the way
    jsonl: dict[str, tuple] = {}
    csvs: dict[str, tuple] = {}
    kind_of = {f"records/{k}s.jsonl": k for k in kinds}
    csv_of = {f"records/{k}s.csv": k for k in kinds}
    schema_of = {rel: k for k, rel in prof["in_bundle"].items()}
    for rel, ent in sorted(entries.items()):
        if rel in kind_of:
            k = kind_of[rel]
            keep = (_keep_unit_v2 if v2 else _keep_block) if k == block_kind else \
                (_keep_issuance_v2 if v2 and k == "issuance" else (lambda r, n: (n, r)))
            got = _read_listed(b, rel, ent, out, _jsonl_consumer(k, validators[k], keep, ckeys_of.get(k)))
            if got is not None:
                n, keys, valid, probs = got
                for check, msg in probs:
                    out.add(check, rel, msg)
                jsonl[k] = (n, keys, valid)
        elif rel in csv_of:
            got = _read_listed(b, rel, ent, out, _csv_consumer(csv_of[rel], ckeys_of.get(csv_of[rel])))
            if got is not None:
                csvs[csv_of[rel]] = got
        elif rel in schema_of:
            got = _read_listed(b, rel, ent, out, _read_json_small)
            if got is not None and got != own[schema_of[rel]]:
                out.add("schema-differs", rel, f"differs from the verifier's {schema_of[rel]} schema")
        else:
            _read_listed(b, rel, ent, out, _drain)
    for k in kinds:
        rel = f"records/{k}s.jsonl"
        if rel not in listed:
            out.add("missing-records", rel, "not listed in the manifest (every bundle carries all three record files)")
    # 5. CSV and JSON Lines agree; record counts
    counts = manifest.get("record_counts")
    if not isinstance(counts, dict):
        out.add("bad-manifest", "manifest.json", f"'record_counts' must be an object of kind: count, not {type(counts).__name__}")
        counts = {}
    for k, (n, keys, _) in jsonl.items():
        rel = f"records/{k}s.jsonl"
        if k in csvs:
            rows, ckeys = csvs[k]
            crel = f"records/{k}s.csv"
            if rows != n:
                out.add("csv-jsonl-differ", crel, f"{rows} rows, the JSON Lines file {n} records")
            elif k in ckeys_of:
                if ckeys is None:
                    out.add("csv-jsonl-differ", crel, f"no {ckeys_of[k]} column")
                elif ckeys != [None if x is None else str(x) for x in keys]:
                    out.add("csv-jsonl-differ", crel, "holds different records from the JSON Lines file")
        c = counts.get(k)
        if counts and c != n:
            out.add("record-count", rel, f"the manifest says {c!r} records, the file has {n} (record removed or added?)")
    # 6. serial blocks
    blocks: list[_Block] = jsonl.get(block_kind, (0, [], []))[2]
    issuances: list[tuple[int, dict]] = jsonl.get("issuance", (0, [], []))[2]
    if v2:
        _check_project_v2(jsonl.get("project", (0, [], []))[2], issuances, blocks, out)
        period = {iss["id"]: (iss["startDate"], iss["endDate"]) for _, iss in issuances}
        blocks = [r._replace(start_date=period.get(r.issuance, ("", ""))[0], end_date=period.get(r.issuance, ("", ""))[1])
                  for r in blocks]
    _check_blocks(blocks, out, blocks_rel)
    _check_double_counting(blocks, issuances, out)
    if holdings is not None:
        _check_holdings(blocks, holdings, out, blocks_rel)
    # 7. totals and deductions, recomputed (only when the record files could be read)
    if block_kind in jsonl and "issuance" in jsonl:
        _check_issuances(blocks, issuances, out)
    if block_kind in jsonl:
        totals = manifest.get("totals")
        by: dict[str, dict[str, int]] = {}
        for r in blocks:
            d = by.setdefault(str(r.vintage), {})
            d[r.status] = d.get(r.status, 0) + r.count
        got = totals.get("units_by_vintage_and_status") if isinstance(totals, dict) else None
        if got != by:
            out.add("manifest-totals", "manifest.json", f"totals {_show(repr(got), 200)} differ from the records {by}")


BLOCKS = "records/credit_blocks.jsonl"
ISSUANCES = "records/issuances.jsonl"


def _check_project_v2(projects: list[tuple[int, dict]], issuances: list[tuple[int, dict]], blocks: list[_Block],
                      out: _Problems) -> None:
    """/2: one project record; every issuance and unit names it; every unit's issuance is in the bundle."""
    rel = "records/projects.jsonl"
    if len(projects) != 1:
        out.add("project", rel, f"a /2 bundle holds exactly one valid project record, not {len(projects)}")
    ids = {p["projectId"] for _, p in projects}
    for n, iss in issuances:
        if iss["warehouseProjectId"] not in ids:
            out.add("project", ISSUANCES, f"line {n}: project {iss['warehouseProjectId']} has no project record")
    known = {iss["id"] for _, iss in issuances}
    for r in blocks:
        if r.issuance not in known:
            out.add("issuance", "records/units.jsonl", f"line {r.line} ({r.serial}): issuance {r.issuance} is not in the bundle")


def _check_blocks(blocks: list[_Block], out: _Problems, BLOCKS: str = BLOCKS) -> None:
    for r in blocks:
        s, f, l_ = r.serial, r.start, r.end
        where = f"line {r.line} ({s})"
        if f > l_:
            out.add("serial-range", BLOCKS, f"{where}: start {f} > end {l_}")
        if r.count != l_ - f + 1:
            out.add("serial-count", BLOCKS, f"{where}: unitCount {r.count} != end - start + 1 = {l_ - f + 1}")
        m = SERIAL_RE.match(s)
        if not m or not serial_ok(s):
            out.add("serial-check", BLOCKS, f"{where}: check digits (ISO 7064 MOD 97-10) do not hold")
        elif (int(m.group(4)), int(m.group(5)), int(m.group(3)), m.group(1)) != (f, l_, r.vintage, r.region):
            out.add("serial-fields", BLOCKS, f"{where}: serial does not match the record's start, end, vintage or region")
        sd, ed = r.start_date, r.end_date
        if sd[:4].isdigit() and ed[:4].isdigit() and not (int(sd[:4]) <= r.vintage <= int(ed[:4])):
            out.add("vintage", BLOCKS, f"{where}: vintage {r.vintage} outside the monitoring period {sd}..{ed}")
        if r.status in BUFFER_STATUSES and r.owner != "BUFFER-POOL":
            out.add("buffer-holder", BLOCKS, f"{where}: buffer units must sit in BUFFER-POOL, not {r.owner}")
    reach, reach_serial = None, None
    for r in sorted(blocks, key=lambda r: (r.start, r.end)):
        if reach is not None and r.start <= reach:
            out.add("serial-overlap", BLOCKS, f"{reach_serial} and {r.serial} overlap (duplicated serial range?)")
        if reach is None or r.end > reach:
            reach, reach_serial = r.end, r.serial


def _examples(keys: list) -> str:
    shown = ", ".join(f"{p} {v}" for _, p, v in sorted(keys)[:3])
    return shown + (", …" if len(keys) > 3 else "")


def _check_double_counting(blocks: list[_Block], issuances: list[tuple[int, dict]], out: _Problems) -> None:
    """The same parcel and vintage credited by two issuances of this bundle."""
    by: dict[tuple, set] = {}
    for r in blocks:
        for p in r.parcels:
            by.setdefault((r.region, p, r.vintage), set()).add(r.issuance)
    for _, iss in issuances:
        for ln in iss["parcelLines"]:
            if ln["issued"] + ln["buffer"] > 0:
                by.setdefault((iss["regionAdcode"], ln["parcelId"], iss["vintageYear"]), set()).add(iss["issuanceId"])
    pairs: dict[tuple, list] = {}
    for key, iids in by.items():
        if len(iids) > 1:
            pairs.setdefault(tuple(sorted(iids)), []).append(key)
    for iids, keys in sorted(pairs.items()):
        out.add("parcel-vintage-twice", ISSUANCES, f"{len(keys)} parcel-vintage(s) credited by issuances {', '.join(iids)} "
                f"(e.g. {_examples(keys)}): the same parcel and vintage issued twice is double counting")


def _check_holdings(blocks: list[_Block], holdings: list, out: _Problems, BLOCKS: str = BLOCKS) -> None:
    valid = []
    for i, h in enumerate(holdings, 1):
        why = _holding_problem(h)
        if why:
            out.add("bad-holdings", "holdings", f"entry {i}: {why}")
        else:
            valid.append(h)
    # serials: the union of held ranges, searched by bisection (not blocks x holdings)
    union: list[list[int]] = []
    for s, e in sorted((h["unitBlockStart"], h["unitBlockEnd"]) for h in valid):
        if union and s <= union[-1][1] + 1:
            union[-1][1] = max(union[-1][1], e)
        else:
            union.append([s, e])
    starts = [u[0] for u in union]
    for r in blocks:
        i = bisect.bisect_right(starts, r.end) - 1
        if i >= 0 and union[i][1] >= r.start:
            out.add("serial-overlap-held", BLOCKS, f"{r.serial} overlaps serials the importer already holds "
                    f"({union[i][0]}-{union[i][1]})")
    # parcel-vintages: the same parcel and vintage issued again under other serials
    mine = {(r.region, p, r.vintage) for r in blocks for p in r.parcels}
    any_region = {(p, v) for _, p, v in mine}
    hits: dict[str, set] = {}
    for i, h in enumerate(valid, 1):
        if "parcels" not in h or "vintageYear" not in h:
            continue
        reg, v = h.get("regionAdcode"), h["vintageYear"]
        label = h.get("issuanceId") or h.get("serial") or f"entry {i}"
        for p in h["parcels"]:
            if (reg, p, v) in mine or (reg is None and (p, v) in any_region):
                hits.setdefault(label, set()).add((reg or "", p, v))
    for label, keys in sorted(hits.items()):
        out.add("parcel-vintage-held", BLOCKS, f"{len(keys)} parcel-vintage(s) of this bundle were already issued in held "
                f"issuance {label} (e.g. {_examples(list(keys))}): the same parcel and vintage credited twice is double "
                "counting, whatever the serials")


def _check_issuances(blocks: list[_Block], issuances: list[tuple[int, dict]], out: _Problems) -> None:
    units_of: dict[str, int] = {}
    for r in blocks:
        units_of[r.issuance] = units_of.get(r.issuance, 0) + r.count
    for n, iss in issuances:
        iid = iss["issuanceId"]
        where = f"line {n} (issuance {iid})"
        units = units_of.get(iid, 0)
        if units != iss["netIssued"] + iss["buffer"]:
            out.add("totals", ISSUANCES, f"{where}: blocks hold {units} units, net issued + buffer = "
                    f"{iss['netIssued'] + iss['buffer']}")
        lines = iss["parcelLines"]
        for fld, tot in (("gross", "grossRemovals"), ("baseline", "baseline"), ("leakage", "leakage"),
                         ("uncertainty", "uncertaintyDeduction"), ("buffer", "buffer"), ("issued", "netIssued"),
                         ("remainder", "remainder")):
            ssum = sum(ln[fld] for ln in lines)
            if not math.isfinite(ssum) or abs(ssum - iss[tot]) > TOL * max(1.0, abs(ssum)):
                out.add("deductions", ISSUANCES, f"{where}: sum of parcel {fld} {ssum} != {tot} {iss[tot]}")
        for ln in lines:
            rest = ln["gross"] - ln["baseline"] - ln["leakage"] - ln["uncertainty"] - ln["buffer"] - ln["issued"] - ln["remainder"]
            if not math.isfinite(rest) or abs(rest) > TOL * max(1.0, abs(ln["gross"])):
                out.add("deductions", ISSUANCES, f"{where}: parcel {ln['parcelId']}: gross - deductions - buffer - issued - "
                        f"remainder = {rest}, not 0")


def verify_files(bundle: str | Path, public_key_file: str | Path | None, holdings_file: str | Path | None = None) -> list[Problem]:
    """verify() from the command line's files: the trusted key and the holdings are read as safely as the bundle."""
    key, probs = read_public_key(public_key_file) if public_key_file else (None, [])
    if probs:
        return probs
    held = None
    if holdings_file:
        held, probs = read_holdings(holdings_file)
    return probs + verify(bundle, key, held)


def format_problem(p: Problem) -> str:
    return f"FAIL [{p.check}] {p.path}: {p.message}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify an eco-value export bundle offline.")
    ap.add_argument("bundle")
    ap.add_argument("--public-key", help="file with the issuer's Ed25519 public key (hex), obtained out of band")
    ap.add_argument("--holdings", help="JSON Lines of credit blocks the importer already holds")
    a = ap.parse_args(argv)
    probs = verify_files(a.bundle, a.public_key, a.holdings)
    for p in probs:
        print(format_problem(p))
    print("OK: signature, hashes, schemas, serials, vintages and totals hold" if not probs else f"{len(probs)} problem(s)")
    return 0 if not probs else 2


if __name__ == "__main__":
    sys.exit(main())
