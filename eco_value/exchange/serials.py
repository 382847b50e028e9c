"""Serial numbers of credit blocks: ``ECV1-{adcode}-{project}-{vintage}-{first}-{last}-{check}``.

``first``/``last`` are 12-digit zero-padded positions in one registry-wide sequence (never reused,
never reset); ``check`` is the ISO 7064 MOD 97-10 check number over the rest (letters A=10 … Z=35,
as in IBAN), so a mistyped serial is caught on import. The verifier re-implements this in
``verify.py`` so that it stays importable on its own.
"""

from __future__ import annotations

import re

SCHEME = "ECV1"
SERIAL_RE = re.compile(r"^ECV1-(\d{6})-([A-Za-z0-9]+)-(\d{4})-(\d{12})-(\d{12})-(\d{2})$")


def _digits(s: str) -> str:
    return "".join(str(int(ch, 36)) for ch in s.upper() if ch.isalnum())


def mod97_check(body: str) -> int:
    """ISO 7064 MOD 97-10 check number (two digits) of ``body``."""
    return 98 - int(_digits(body) + "00") % 97


def format_serial(adcode: str, project: str, vintage: int, first: int, last: int) -> str:
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
