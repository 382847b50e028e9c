"""Uploads: a request-body cap enforced before and while reading, and safe unpacking of zip bundles.

* :class:`BodyLimit` (ASGI middleware) answers 413 at once when ``Content-Length`` exceeds the cap, and
  stops reading a body (chunked or lying about its length) as soon as it passes the cap.
* :func:`safe_unzip` checks every member of an archive first (no absolute paths, no ``..``, no drive
  letters or backslashes, no symlinks or other special files, at most so many members and bytes) and
  writes nothing unless all pass; while writing it counts the bytes really inflated, so a member whose
  header understates its size is stopped too.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import EcoValueError

MB = 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 64 * MB       # one request body
DEFAULT_MAX_UNZIPPED_BYTES = 256 * MB    # all members of one archive, inflated
DEFAULT_MAX_MEMBERS = 2000
COPY_CHUNK = 1 * MB


class UploadError(EcoValueError):
    """An upload the console refuses (too large, not a zip, unsafe member)."""


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``max_bytes`` (413), early."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _refuse(self, send, got: str) -> None:
        body = (f"upload refused: {got}; the limit is {self.max_bytes:,} bytes "
                "(start the console with a larger --max-upload-mb if this file is genuine)").encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    n = int(v)
                except ValueError:
                    return await self._refuse(send, "the Content-Length header is not a number")
                if n > self.max_bytes:
                    return await self._refuse(send, f"Content-Length is {n:,} bytes")
        seen = 0
        over = False
        forwarded = False

        async def limited_receive():
            # past the cap the app is told the client went away: it stops reading, and whatever it
            # answers (an error about the broken form) is replaced by the 413 below
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            nonlocal forwarded
            if over and not forwarded:
                return
            forwarded = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:   # noqa: BLE001 - the app's reaction to the cut-off body (ClientDisconnect and the like)
            if not over:
                raise
        if over and not forwarded:
            await self._refuse(send, f"the body passed {self.max_bytes:,} bytes while being read")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name:
        return "contains a backslash (a Windows path)"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "climbs out of the folder with '..'"
    if any(ord(c) < 32 for c in name):
        return "contains a control character"
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):   # 0: written without a file type (Windows tools)
        return "is not a regular file or folder"
    return None


def safe_unzip(archive: Path, dest: Path, max_members: int = DEFAULT_MAX_MEMBERS,
               max_bytes: int = DEFAULT_MAX_UNZIPPED_BYTES, label: str | None = None) -> Path:
    """Unpack ``archive`` into the empty folder ``dest``; every member is checked before anything is written.

    Returns the bundle root: ``dest`` itself, or its only top-level folder when the archive wraps one.
    """
    label = label or Path(archive).name
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UploadError(f"{label}: not a zip archive ({exc}); upload the bundle folder zipped") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UploadError(f"{label}: {len(infos):,} members, more than the {max_members:,} allowed")
        bad = [(i.filename, p) for i in infos if (p := _member_problem(i))]
        if bad:
            shown = "; ".join(f"{n!r} {p}" for n, p in bad[:10])
            raise UploadError(f"{label}: {len(bad)} unsafe member(s), nothing was unpacked: {shown}")
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise UploadError(f"{label}: unpacks to {declared:,} bytes, more than the {max_bytes:,} allowed")
        root = dest.resolve()
        total = 0
        try:
            for i in infos:
                target = (root / i.filename).resolve()
                if root != target and root not in target.parents:   # belt and braces after the name checks
                    raise UploadError(f"{label}: member {i.filename!r} would land outside the folder")
                if i.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(i) as src, open(target, "xb") as out:
                    while chunk := src.read(COPY_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(f"{label}: inflates past {max_bytes:,} bytes (its headers understate "
                                              "the sizes); refused")
                        out.write(chunk)
        except (UploadError, zipfile.BadZipFile, OSError, EOFError) as exc:
            for p in root.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            if isinstance(exc, UploadError):
                raise
            raise UploadError(f"{label}: the archive is damaged ({exc})") from None
    tops = list(root.iterdir())
    if len(tops) == 1 and tops[0].is_dir() and not (root / "manifest.json").exists():
        return tops[0]
    return root
