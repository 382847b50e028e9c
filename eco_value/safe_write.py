"""Outputs never delete what they did not create.

Every output (a folder of results, a bundle, a report, a table) is written into a fresh temporary
sibling, ``.<name>.partial-<pid>-<random>``, and renamed into place only when it is complete:

- an existing non-empty folder, or an existing file, is refused unless ``overwrite``; a file where a
  folder is wanted (and the other way round) is always refused;
- even with ``overwrite``, the output is never the current folder or a folder above it, and never is
  (or holds) a protected path: the catalog, its input files, the database, the signing key;
- with ``overwrite`` the previous output is replaced only after the new one is complete (an atomic
  exchange where the system has one, else two renames with the old copy kept aside meanwhile);
- temporaries of a process that no longer runs (killed by SIGKILL, power loss) are removed by the
  next output into the same folder; an old output set aside by an interrupted replacement is put back.

Checks happen twice: when the output is declared (before any work, so a refused command costs
nothing) and again when the result is renamed into place (another process may have written there).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import EcoValueError

PARTIAL = "partial"          # a temporary being written
OLD = "old"                  # a previous output set aside during a replacement
LEFTOVER = re.compile(rf"^\.(?P<name>.+)\.(?P<what>{PARTIAL}|{OLD})-(?P<pid>\d+)-[A-Za-z0-9_]+$")
NAME_KEEP = 80               # characters of the output's name kept in a temporary's name (NAME_MAX is 255)
PID_REUSE_SLACK_S = 2.0      # /proc start times are known to the clock tick, boot time to the second
_AT_FDCWD = -100             # Linux renameat2(2)
_RENAME_EXCHANGE = 2


class OutputError(EcoValueError):
    """An output would replace or delete something eco-value did not create; nothing was written."""


def database_files(url: str | None) -> list[Path]:
    """The file of a SQLite store URL (nothing for server databases or in-memory SQLite)."""
    if not url or not url.startswith("sqlite"):
        return []
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    return [Path(db)] if db and db != ":memory:" else []


def run_files(store, run_id: str) -> list[tuple[Path, str]]:
    """The catalog and input files a stored run was computed from, as (path, what) pairs."""
    run = store.run(run_id)
    out = [(Path(run.catalog_path), "the run's catalog")] if run.catalog_path else []
    inputs = store.table("inputs", run.id)
    if not inputs.empty:
        out += [(Path(p), f"the run's input '{layer}'") for p, layer in zip(inputs["path"], inputs["layer"])]
    return out


def store_files(store) -> list[tuple[Path, str]]:
    return [(p, "the database") for p in database_files(getattr(store, "url", None))]


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


class SafeOutput:
    """One declared output: ``path`` (a folder, ``kind="dir"``, or a file, ``kind="file"``)."""

    def __init__(self, path: str | os.PathLike, kind: str = "dir", overwrite: bool = False,
                 protect: Iterable[tuple[Path, str] | Path] = (), option: str = "--out"):
        if kind not in ("dir", "file"):
            raise ValueError(f"kind must be 'dir' or 'file', not {kind!r}")
        self.given = Path(path)
        absolute = Path(os.path.abspath(self.given))          # '.' and '..' resolved lexically
        if absolute == Path(absolute.anchor):
            raise OutputError(f"{option} {self.given}: the root of the file system cannot be an output")
        # the entry that is created or replaced: its folder resolved, the name itself kept (a symbolic
        # link given as the output is replaced as a link; what it points to is never deleted)
        self.path = _real(absolute.parent) / absolute.name
        self.kind = kind
        self.overwrite = overwrite
        self.option = option
        self.protect = [(Path(p), "a protected file") if not isinstance(p, tuple) else (Path(p[0]), p[1]) for p in protect]
        clean_leftovers(self.path.parent)     # first: it may put back an output set aside by a killed process
        self.check()

    # -- checks ------------------------------------------------------------------------------------
    def _guarded(self) -> list[tuple[Path, str]]:
        try:
            cwd = [(Path.cwd(), "the current folder")]
        except OSError:
            cwd = []
        return [(p, w) for p, w in self.protect] + cwd

    def check(self, late: bool = False) -> None:
        """Refuse the output if it exists (unless ``overwrite``) or is or holds a protected path."""
        p, opt = self.path, self.option
        if not os.path.lexists(p):
            return
        is_link = p.is_symlink()
        here = p if is_link else _real(p)
        for q, what in self._guarded():
            rq = _real(q)
            if not is_link and (rq == here or here in rq.parents):
                holds = "is" if rq == here else "holds"
                raise OutputError(f"{opt} {self.given}: this {'folder' if p.is_dir() else 'file'} {holds} {what} ({q}); "
                                  f"eco-value never replaces it, even with --overwrite. Fix: choose a new {opt}")
            if is_link and rq == here:
                raise OutputError(f"{opt} {self.given} is {what}; choose another {opt}")
        if self.kind == "dir" and not is_link and not p.is_dir():
            raise OutputError(f"{opt} {self.given} is a file, not a folder; eco-value does not replace it. "
                              f"Fix: choose a folder name that does not exist yet")
        if self.kind == "file" and not is_link and p.is_dir():
            raise OutputError(f"{opt} {self.given} is a folder, not a file; eco-value does not replace it. "
                              f"Fix: give the path of a file, e.g. {self.given / 'out'}{self.given.suffix}")
        if self.overwrite:
            return
        meanwhile = " (created meanwhile by another process)" if late else ""
        if self.kind == "dir" and not is_link:
            entries = sorted(x.name for x in p.iterdir())
            if entries:
                shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
                raise OutputError(f"{opt} {self.given} exists and is not empty{meanwhile}: {len(entries)} entries ({shown}); "
                                  f"eco-value never deletes files it did not create. Fix: choose a new folder, or pass "
                                  f"--overwrite to replace this folder with the new output")
        else:
            raise OutputError(f"{opt} {self.given} already exists{meanwhile}. Fix: choose another name, or pass "
                              f"--overwrite to replace it")

    # -- writing -------------------------------------------------------------------------------------
    @contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a new temporary folder (``kind="dir"``) or file path to write the output into; on normal
        exit it is checked again and renamed into place, on any exception removed."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name[:NAME_KEEP]}.{PARTIAL}-{os.getpid()}-", dir=parent))
        except OSError as e:
            raise OutputError(f"{self.option} {self.given}: cannot write in {parent} ({e.strerror or e}). "
                              f"Fix: choose a folder you can write to") from None
        try:
            yield tmp if self.kind == "dir" else tmp / self.path.name
            self._publish(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, tmp: Path) -> None:
        self.check(late=True)
        target = self.path
        if self.kind == "file":
            src = tmp / target.name
            if not src.exists():
                raise OutputError(f"{self.option} {self.given}: nothing was written")
            if self.overwrite:
                os.replace(src, target)
                return
            try:
                os.link(src, target)            # fails if the target exists: never clobbers
            except FileExistsError:
                self.check(late=True)
                raise
            except OSError:                     # no hard links on this file system
                if os.path.lexists(target):
                    self.check(late=True)
                os.rename(src, target)
            return
        if not self.overwrite:
            try:
                os.rename(tmp, target)          # succeeds only onto nothing or an empty folder
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    self.check(late=True)
                raise
            return
        if target.is_symlink():
            target.unlink()
        if target.is_dir() and _exchange(tmp, target):
            return                              # tmp now holds the previous output; removed by staging()
        if os.path.lexists(target):
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name[:NAME_KEEP]}.{OLD}-{os.getpid()}-", dir=target.parent))
            os.rename(target, aside / target.name)
            os.rename(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, target)


def safe_output(path: str | os.PathLike, kind: str = "dir", overwrite: bool = False,
                protect: Iterable[tuple[Path, str] | Path] = (), option: str = "--out") -> SafeOutput:
    """Declare an output: check it now (raises :class:`OutputError`), clean dead leftovers beside it."""
    return SafeOutput(path, kind, overwrite, protect, option)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(e, os.strerror(e), str(b))


# -- leftovers of processes that died ------------------------------------------------------------------
def _proc_start(pid: int) -> tuple[float, str] | None:
    """(start time as a UNIX time, state letter) of ``pid`` from /proc; None where unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        fields = raw[raw.rindex(")") + 2:].split()
        btime = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK"), fields[0]
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _owner_gone(pid: int, mtime: float) -> bool:
    """True when process ``pid`` no longer runs, is a zombie, or started after the leftover was written."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    except OSError:
        return False
    st = _proc_start(pid)
    if st is None:
        return False
    started, state = st
    return state in ("Z", "X") or started > mtime + PID_REUSE_SLACK_S


def clean_leftovers(folder: Path) -> list[str]:
    """Remove eco-value temporaries in ``folder`` whose process is gone; put back an output that an
    interrupted replacement had set aside. Returns the names handled."""
    done = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return done
    for e in entries:
        m = LEFTOVER.match(e.name)
        if not m:
            continue
        try:
            if not _owner_gone(int(m["pid"]), e.lstat().st_mtime):
                continue
        except OSError:
            continue
        if m["what"] == OLD and e.is_dir():
            for kept in e.iterdir():
                if not os.path.lexists(e.parent / kept.name):
                    try:
                        os.rename(kept, e.parent / kept.name)
                    except OSError:
                        pass
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            try:
                e.unlink()
            except OSError:
                pass
        done.append(e.name)
    return done
