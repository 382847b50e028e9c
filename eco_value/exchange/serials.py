"""Serial numbers of credit blocks: ``ECV1-{adcode}-{project}-{vintage}-{first}-{last}-{check}``.

``first``/``last`` are 12-digit zero-padded positions in one registry-wide sequence (never reused,
never reset); ``check`` is the ISO 7064 MOD 97-10 check number over the rest (letters A=10 … Z=35,
as in IBAN), so a mistyped serial is caught on import. The verifier re-implements this in
``verify.py`` so that it stays importable on its own.

Project ids are **ASCII** letters and digits only (1 to ``PROJECT_ID_MAX_LEN`` characters). The check
number is defined over the 36 symbols 0-9 and A-Z only (ISO 7064 with the IBAN letter values);
other letters (Chinese, accented, full-width) or digits (Arabic-Indic, full-width) have no value in
it, and the verifier's pattern is ASCII. A project id is therefore validated before an issuance
writes anything (:func:`validate_project_id`), and every function here refuses non-ASCII input with
``ValueError`` instead of computing a check number that no importer could reproduce.
"""

from __future__ import annotations

import re

from ..errors import EcoValueError

SCHEME = "ECV1"
SERIAL_RE = re.compile(r"^ECV1-(\d{6})-([A-Za-z0-9]+)-(\d{4})-(\d{12})-(\d{12})-(\d{2})$", re.ASCII)
SERIAL_DIGITS = 12                       # zero-padded width of first/last in a serial (format, not a parameter)
SERIAL_MAX = 10**SERIAL_DIGITS - 1       # the largest serial position the format can hold
PROJECT_ID_MAX_LEN = 32
PROJECT_RE = re.compile(rf"[A-Za-z0-9]{{1,{PROJECT_ID_MAX_LEN}}}", re.ASCII)
_BASE36 = re.compile(r"[0-9A-Za-z-]*", re.ASCII)


class RegistryError(EcoValueError):
    """An issuance or status change the registry refuses (defined here, the exchange package's base module)."""


class SerialError(RegistryError):
    """A project id or serial that the ECV1 scheme cannot encode."""


def validate_project_id(project_id) -> str:
    """Return ``project_id`` if it can be part of a serial, else raise :class:`SerialError` saying why."""
    if not isinstance(project_id, str) or not PROJECT_RE.fullmatch(project_id):
        if not isinstance(project_id, str) or not project_id.strip():
            what = "is empty"
        elif len(project_id) > PROJECT_ID_MAX_LEN and project_id.isascii() and project_id.isalnum():
            what = f"is {len(project_id)} characters long (at most {PROJECT_ID_MAX_LEN})"
        else:
            bad = sorted({c for c in project_id if not (c.isascii() and c.isalnum())})
            what = "contains " + ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:8])
        raise SerialError(f"project id {project_id!r} (--project): {what}; a project id is part of every serial and "
                          f"its check digits, so it must be 1-{PROJECT_ID_MAX_LEN} ASCII letters and digits (A-Z, a-z, "
                          "0-9). Fix: use --project with a Latin-letter code such as QL2023 (keep the Chinese name in "
                          "your project documents)")
    return project_id


def _digits(s: str) -> str:
    if not _BASE36.fullmatch(s):
        bad = sorted({c for c in s if not (c.isascii() and (c.isalnum() or c == "-"))})
        raise ValueError(f"{s!r} contains {', '.join(repr(c) for c in bad[:8])}: serials use ASCII letters and digits only")
    return "".join(str(int(ch, 36)) for ch in s.upper() if ch != "-")


def mod97_check(body: str) -> int:
    """ISO 7064 MOD 97-10 check number (two digits) of ``body``."""
    return 98 - int(_digits(body) + "00") % 97


def format_serial(adcode: str, project: str, vintage: int, first: int, last: int) -> str:
    if not PROJECT_RE.fullmatch(project):
        raise ValueError(f"project id {project!r} is not 1-{PROJECT_ID_MAX_LEN} ASCII letters and digits")
    body = f"{SCHEME}-{adcode}-{project}-{vintage:04d}-{first:012d}-{last:012d}"
    return f"{body}-{mod97_check(body):02d}"


def parse_serial(serial: str) -> dict:
    m = SERIAL_RE.match(serial)
    if not m:
        raise ValueError(f"'{serial}' is not an ECV1 serial")
    adcode, project, vintage, first, last, check = m.groups()
    body = serial.rsplit("-", 1)[0]
    if int(_digits(body) + check) % 97 != 1:
        raise ValueError(f"check digits of '{serial}' are wrong (mistyped serial?)")
    return {"adcode": adcode, "project": project, "vintage": int(vintage), "first": int(first), "last": int(last)}
