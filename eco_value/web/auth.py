"""Console users, roles and sessions; the write-action log.

Users live in a JSON file (``--users``, default ``web_users.json`` in the user config folder), each with
a role and an argon2id hash of the password; the plain password is never stored or shown. Sessions are
random tokens kept in the server's memory (a restart logs everyone out) with their own CSRF token.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import EcoValueError
from ..ids import id_problem

ROLES = ("viewer", "bureau", "operator")
# what each role may do; every role reads (runs, map, explain, holdings, event log) and values land units
PERMISSIONS = {
    "viewer": frozenset({"read", "value-unit"}),
    "bureau": frozenset({"read", "value-unit", "issue", "run"}),
    "operator": frozenset({"read", "value-unit", "verify", "apply-status"}),
}
MIN_PASSWORD_CHARS = 10
SESSION_SECONDS = 8 * 3600
USERS_FILE_NAME = "web_users.json"
ACTIONS_FILE_NAME = "web_actions.jsonl"


class AccessError(EcoValueError):
    """A user, role or password the console refuses."""


def default_users_file() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("eco-value", appauthor=False)) / USERS_FILE_NAME


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def read_users(path: Path) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        users = d["users"]
        assert isinstance(users, dict) and all(isinstance(u, dict) and u.get("role") in ROLES and u.get("hash")
                                               for u in users.values())
    except (ValueError, KeyError, TypeError, AssertionError):
        raise AccessError(f"{path}: not a users file of the console (expected {{\"users\": {{NAME: {{\"role\", \"hash\"}}}}}}); "
                          "move it away and add users again with `eco-value serve --add-user NAME --role ROLE`") from None
    return users


def add_user(path: Path, name: str, role: str, password: str) -> None:
    """Add or replace a user (password hashed with argon2id); the file is written 0600, atomically."""
    path = Path(path)
    bad = id_problem(name)
    if bad:
        raise AccessError(f"user name {name!r} {bad}; give a plain name such as 'lin.wei'")
    if role not in ROLES:
        raise AccessError(f"role {role!r} is unknown; choose one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccessError(f"the password has {len(password)} characters; give at least {MIN_PASSWORD_CHARS}")
    users = read_users(path)
    users[name] = {"role": role, "hash": _hasher().hash(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"users": users}, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_DUMMY = None


def check_password(users: dict[str, dict], name: str, password: str) -> str | None:
    """The user's role if the password is right, else None (same work whether or not the user exists)."""
    from argon2.exceptions import VerificationError, InvalidHashError

    global _DUMMY
    h = _hasher()
    u = users.get(name)
    if u is None:
        _DUMMY = _DUMMY or h.hash(secrets.token_hex(16))
        try:
            h.verify(_DUMMY, password)
        except (VerificationError, InvalidHashError):
            pass
        return None
    try:
        h.verify(u["hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return u["role"]


@dataclass
class Session:
    user: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    expires: float = field(default_factory=lambda: time.time() + SESSION_SECONDS)

    def may(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, ())


class Sessions:
    def __init__(self):
        self._d: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, user: str, role: str) -> tuple[str, Session]:
        tok = secrets.token_urlsafe(32)
        s = Session(user, role)
        with self._lock:
            self._d[tok] = s
        return tok, s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            s = self._d.get(token)
            if s is not None and s.expires < time.time():
                del self._d[token]
                s = None
        return s

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._d.pop(token or "", None)


class ActionLog:
    """Every write action of the console, one JSON line each: time (UTC), user, role, action, details."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, session: Session, action: str, **detail) -> None:
        rec = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "user": session.user,
               "role": session.role, "action": action} | detail
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
