"""The issuer's Ed25519 signing key (PyNaCl). Private key kept in the user's config folder, 0600."""

from __future__ import annotations

import os
import secrets
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
    """Write a new private key, readable by its owner only, whatever the umask or leftovers in the folder.

    The key goes into a fresh, uniquely named temporary file created with ``O_CREAT | O_EXCL`` and mode
    0600 (so an existing or planted file is never reused), is ``fchmod``-ed to 0600 in case the
    filesystem ignores the creation mode, fsync-ed, then renamed over the key; the folder is created
    0700. A failure leaves the old key and no temporary file behind.
    """
    d = key_dir()
    if not d.exists():
        d.mkdir(parents=True, mode=0o700)
        os.chmod(d, 0o700)   # mkdir's mode is masked by the umask only downwards; make it exact
    p = d / KEY_NAME
    if p.exists() and not force:
        raise EcoValueError(f"a signing key already exists at {p}; use --force to replace it (old bundles then "
                            "verify only with the old public key)")
    sk = SigningKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = d / f".{KEY_NAME}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:
        raise EcoValueError(f"cannot create a temporary key file in {d}; check the folder")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(sk.encode(encoder=HexEncoder))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(d)
    return p


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def signing_key() -> SigningKey:
    p = key_dir() / KEY_NAME
    if not p.exists():
        raise EcoValueError(f"no signing key at {p}; create one with `eco-value keys generate`")
    return SigningKey(p.read_bytes().strip(), encoder=HexEncoder)


def public_key_hex() -> str:
    return signing_key().verify_key.encode(encoder=HexEncoder).decode()
