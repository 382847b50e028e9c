"""The issuer's Ed25519 signing key (PyNaCl). Private key kept in the user's config folder, 0600."""

from __future__ import annotations

import os
from pathlib import Path

from nacl.encoding import HexEncoder
from nacl.signing import SigningKey

from ..errors import EcoValueError

KEY_NAME = "issuer_ed25519.key"


def key_dir() -> Path:
    d = os.environ.get("ECO_VALUE_KEY_DIR")
    if d:
        return Path(d)
    from platformdirs import user_config_dir

    return Path(user_config_dir("eco-value", appauthor=False))


def generate(force: bool = False) -> Path:
    d = key_dir()
    d.mkdir(parents=True, exist_ok=True)
    p = d / KEY_NAME
    if p.exists() and not force:
        raise EcoValueError(f"a signing key already exists at {p}; use --force to replace it (old bundles then "
                            "verify only with the old public key)")
    sk = SigningKey.generate()
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(sk.encode(encoder=HexEncoder))
    os.replace(tmp, p)
    return p


def signing_key() -> SigningKey:
    p = key_dir() / KEY_NAME
    if not p.exists():
        raise EcoValueError(f"no signing key at {p}; create one with `eco-value keys generate`")
    return SigningKey(p.read_bytes().strip(), encoder=HexEncoder)


def public_key_hex() -> str:
    return signing_key().verify_key.encode(encoder=HexEncoder).decode()
