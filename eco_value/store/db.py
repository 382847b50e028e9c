"""Database URL, engine and schema migration (Alembic) of the valuation store."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import create_engine

ENV_VAR = "ECO_VALUE_DB"
PG_MIGRATION_LOCK = 0x6563_6F76_616C_7565 & 0x7FFF_FFFF_FFFF_FFFF   # "ecovalue": one advisory lock id for migrations


def default_url() -> str:
    from platformdirs import user_data_dir

    d = Path(user_data_dir("eco-value", appauthor=False))
    d.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{d / 'eco-value.sqlite'}"


def resolve_url(url: str | None) -> str:
    """``--db`` if given, else ``ECO_VALUE_DB``, else a SQLite file in the user's data folder."""
    url = url or os.environ.get(ENV_VAR) or default_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if "://" not in url:  # a bare path means a SQLite file
        url = f"sqlite:///{Path(url).resolve()}"
    return url


MASK = "***"
# user:password@ in any scheme://... text (the password part is everything up to the last '@' of the netloc)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^/?#\s]*)(?P<at>@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'[^']*'|\S+)", re.IGNORECASE)
MIN_SECRET_CHARS = 4   # shorter strings are masked only where they sit in a URL or password=...


def display_url(url: str | None) -> str:
    """A database URL as it may be shown to anyone: the password masked (errors, report, logs, JSON)."""
    if url is None:
        return ""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: mask what looks like a password
        return mask_secrets(str(url))


def url_secrets(url: str | None) -> list[str]:
    """The password of a database URL, raw and URL-encoded (what a message might contain)."""
    if not url:
        return []
    try:
        pw = make_url(url).password
    except Exception:  # noqa: BLE001
        m = _URL_PASSWORD.search(str(url))
        pw = m.group("pw") if m else None
    if not pw:
        return []
    pw = str(pw)
    return sorted({pw, quote(pw, safe=""), quote(pw)}, key=len, reverse=True)


def mask_secrets(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with URL passwords, ``password=...`` and each of ``secrets`` replaced by ``***``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), str(text))
    text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for s in sorted(secrets, key=len, reverse=True):
        if s and len(s) >= MIN_SECRET_CHARS:
            text = text.replace(s, MASK)
    return text


def _sqlite_pragmas(dbapi_conn, _rec):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_ENGINES: dict[str, Engine] = {}


def migration_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def get_engine(url: str | None = None, migrate: bool = True) -> Engine:
    """Engine for the store at ``url``, upgraded to the newest schema (Alembic ``upgrade head``)."""
    url = resolve_url(url)
    if url in _ENGINES:
        return _ENGINES[url]
    kw = {}
    if url.startswith("sqlite"):
        kw["connect_args"] = {"timeout": 30}
    engine = create_engine(url, **kw)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    if not url.startswith("sqlite"):   # a server that is down or refuses the login; a SQLite file is opened
        _check_reachable(engine, url)   # under the migration lock below (its WAL switch would race another process)
    if migrate:
        from alembic import command

        cfg = migration_config(url)
        with _one_migration_at_a_time(url), engine.begin() as conn:
            if conn.dialect.name == "postgresql":   # released when this transaction ends
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    _ENGINES[url] = engine
    return engine


def _check_reachable(engine: Engine, url: str) -> None:
    """Open one connection; a server that is down or refuses the login is a clear error, password masked."""
    from ..errors import StoreError

    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        reason = " ".join(str(exc.orig or exc).split())
        engine.dispose()
        reason = mask_secrets(reason, url_secrets(url))
        stop = "" if reason.endswith((".", "?", "!")) else "."
        raise StoreError(f"cannot open the database {display_url(url)}: {reason}{stop} "
                         "Fix: check that the server runs and the URL (--db or $ECO_VALUE_DB) is right") from None


@contextmanager
def _one_migration_at_a_time(url: str):
    """Serialise schema upgrades of one SQLite file across processes: an exclusive ``flock`` on a lock
    file beside the database (``<db>.migrate-lock``; SQLite's own locks do not cover Alembic's
    check-then-create). PostgreSQL uses an advisory lock inside the migration's transaction instead."""
    db = make_url(url).database if url.startswith("sqlite") else None
    if not db or db == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:   # Windows: no flock; SQLite then relies on its own locking
        yield
        return
    lock = Path(db).with_name(Path(db).name + ".migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
