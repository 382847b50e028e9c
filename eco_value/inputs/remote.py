"""Remote inputs: catalog paths ``https://…``, ``http://…`` and ``s3://…``.

* :class:`RemotePath` stands where the catalog gives a local :class:`~pathlib.Path`
  (:meth:`Catalog.path_of`): ``os.fspath`` is GDAL's ``/vsicurl/<url>`` or ``/vsis3/<bucket>/<key>``, so
  rasterio and pyogrio read it unchanged, and the relative-path logic never touches the URL.
* :func:`remote_env` is the GDAL configuration (``raster_inputs/remote.toml``) set with ``rasterio.Env``
  around every open of a remote raster — no process-wide state.
* :func:`file_identity` is what a run's manifest records of one input: the SHA-256 of a local file, the
  SHA-256 of a remote file read in streaming (bounded memory) when it is at most
  ``max_streamed_hash_bytes``, else the server's ETag plus size from one HEAD request; ``hash_kind``
  says which (``"sha256"`` | ``"etag+size"``).
* :func:`remote_problems` checks that a remote input is reachable, exists and answers range requests
  (GDAL reads remote rasters by byte ranges); each problem names the URL (credentials masked).

``s3://`` objects are read by GDAL with the usual AWS environment (``AWS_ACCESS_KEY_ID``, …,
``AWS_S3_ENDPOINT``); their fingerprint and checks go over HTTPS to the same object
(``https://<bucket>.s3.amazonaws.com/<key>``, or ``<AWS_S3_ENDPOINT>/<bucket>/<key>``) without signing,
so a private bucket needs a public-read or presigned ``https://`` URL in the catalog instead.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

from ..errors import InputError, Problem
from ..resources import data_dir

REMOTE_PREFIXES = ("http://", "https://", "s3://")
HASH_SHA256 = "sha256"
HASH_ETAG_SIZE = "etag+size"
_SECRET_QUERY_KEYS = ("signature", "sig", "token", "key", "secret", "password", "credential", "auth")


@lru_cache(maxsize=1)
def remote_settings() -> dict:
    """The values of ``raster_inputs/remote.toml`` (each entry's ``value``)."""
    with open(data_dir("raster_inputs") / "remote.toml", "rb") as f:
        return {k: v["value"] for k, v in tomllib.load(f).items()}


def is_remote(p) -> bool:
    """True for a :class:`RemotePath` or a string that is an ``http(s)://`` or ``s3://`` URL."""
    return isinstance(p, RemotePath) or (isinstance(p, str) and p.lower().startswith(REMOTE_PREFIXES))


def mask_url(url: str) -> str:
    """The URL with embedded credentials masked: ``user:***@host`` and secret-looking query values."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(f"{k}={'***' if any(s in k.lower() for s in _SECRET_QUERY_KEYS) else v}" for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass
class Head:
    status: int
    size: int | None
    etag: str
    reason: str = ""


class RemotePath(os.PathLike):
    """A remote catalog path. ``os.fspath``/``str`` give GDAL's VSI path; :attr:`display` the masked URL."""

    def __init__(self, url: str):
        self.url = url
        self._head: Head | None = None

    # --- what GDAL, rasterio and pyogrio see -------------------------------------------------------
    @property
    def vsi(self) -> str:
        if self.url.lower().startswith("s3://"):
            return "/vsis3/" + self.url[len("s3://"):]
        return "/vsicurl/" + self.url

    def __fspath__(self) -> str:
        return self.vsi

    def __str__(self) -> str:
        return self.vsi

    def __repr__(self) -> str:
        return f"RemotePath({self.display!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # --- what people see ---------------------------------------------------------------------------
    @property
    def display(self) -> str:
        return mask_url(self.url)

    @property
    def name(self) -> str:
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    # --- the parts of the Path API the catalog's users call ---------------------------------------
    def is_absolute(self) -> bool:
        return True

    def resolve(self) -> "RemotePath":
        return self

    def head(self) -> Head:
        if self._head is None:
            self._head = head(self.http_url)
        return self._head

    def exists(self) -> bool:
        try:
            return self.head().status < 400
        except OSError:
            return False

    is_file = exists

    def stat(self):
        """``st_size`` from the server's Content-Length (infinite when it gives none: then no block can
        be judged beyond the end of the file)."""
        size = self.head().size
        return SimpleNamespace(st_size=size if size is not None else math.inf)

    @property
    def http_url(self) -> str:
        """The URL the fingerprint and the checks request (an ``s3://`` object over HTTPS)."""
        if not self.url.lower().startswith("s3://"):
            return self.url
        bucket, _, key = self.url[len("s3://"):].partition("/")
        endpoint = os.environ.get("AWS_S3_ENDPOINT")
        if endpoint:
            scheme = "https" if os.environ.get("AWS_HTTPS", "YES").upper() not in ("NO", "FALSE", "0") else "http"
            return f"{scheme}://{endpoint}/{bucket}/{urllib.parse.quote(key)}"
        return f"https://{bucket}.s3.amazonaws.com/{urllib.parse.quote(key)}"


def _request(url: str, method: str = "GET", headers: dict | None = None) -> urllib.request.Request:
    """A request with any ``user:password@`` of the URL sent as HTTP basic authentication."""
    parts = urllib.parse.urlsplit(url)
    headers = dict(headers or {})
    if parts.username is not None:
        cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return urllib.request.Request(url, method=method, headers=headers)


def _open(req: urllib.request.Request):
    return urllib.request.urlopen(req, timeout=float(remote_settings()["request_timeout_s"]))


def head(url: str) -> Head:
    """HEAD of a URL: status, size and ETag. An HTTP error status is returned, not raised;
    an unreachable host raises ``OSError`` (``urllib.error.URLError``)."""
    try:
        with _open(_request(url, "HEAD")) as r:
            size = r.headers.get("Content-Length")
            return Head(r.status, int(size) if size is not None else None, r.headers.get("ETag", ""), r.reason)
    except urllib.error.HTTPError as exc:
        return Head(exc.code, None, "", str(exc.reason))


def supports_ranges(url: str) -> bool:
    """True when the server answers a one-byte range request with 206 Partial Content."""
    try:
        with _open(_request(url, "GET", {"Range": "bytes=0-0"})) as r:
            return r.status == 206
    except urllib.error.HTTPError as exc:
        return exc.code == 206


def sha256_stream(url: str) -> tuple[str, int]:
    """SHA-256 and length of a remote file, read in chunks of ``hash_chunk_bytes`` (bounded memory)."""
    h = hashlib.sha256()
    n = 0
    chunk = int(remote_settings()["hash_chunk_bytes"])
    with _open(_request(url)) as r:
        for block in iter(lambda: r.read(chunk), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def sha256_local(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_identity(path, kind: str | None = None) -> dict:
    """What the manifest records of one input: ``sha256``, ``hash_kind``, ``etag``, ``size_bytes``
    (``sha256`` is empty for ``etag+size``). A remote input that cannot be fingerprinted raises
    :class:`InputError` naming the URL.

    ``kind`` forces the ``hash_kind`` of a remote input (a re-check compares in the kind the run
    recorded, whatever ``max_streamed_hash_bytes`` says today); by default it follows the threshold."""
    if not isinstance(path, RemotePath):
        p = Path(path)
        return {"sha256": sha256_local(p), "hash_kind": HASH_SHA256, "etag": "", "size_bytes": p.stat().st_size}
    probs = remote_problems(path, "input", check_ranges=False)
    if probs:
        raise InputError(probs)
    h = path.head()
    limit = int(remote_settings()["max_streamed_hash_bytes"])
    if kind is None:
        kind = HASH_ETAG_SIZE if h.size is not None and h.size > limit and h.etag else HASH_SHA256
    if kind == HASH_ETAG_SIZE:
        return {"sha256": "", "hash_kind": HASH_ETAG_SIZE, "etag": h.etag, "size_bytes": h.size}
    # small enough, or the server gives no ETag to identify it by: read it through SHA-256
    digest, n = sha256_stream(path.http_url)
    return {"sha256": digest, "hash_kind": HASH_SHA256, "etag": h.etag, "size_bytes": n}


def content_id(row) -> str:
    """One string that changes when an input's content does (for fingerprints and change checks)."""
    get = row.get if isinstance(row, dict) else lambda k, d=None: getattr(row, k, d)
    if (get("hash_kind", HASH_SHA256) or HASH_SHA256) == HASH_ETAG_SIZE:
        return f"{HASH_ETAG_SIZE}:{get('etag', '')}:{get('size_bytes', '')}"
    return get("sha256", "")


def display_path(path) -> str:
    """The path as stored and shown: a remote one as its URL with credentials masked."""
    return path.display if isinstance(path, RemotePath) else str(path)


def remote_env(path):
    """``rasterio.Env`` with the remote GDAL configuration for a remote path; a null context otherwise."""
    if not isinstance(path, RemotePath):
        return nullcontext()
    import rasterio

    cfg = {k: str(v) for k, v in remote_settings()["gdal_config"].items()}
    if path.suffix:
        cfg["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"] = path.suffix
    return rasterio.Env(**cfg)


def remote_problems(path: RemotePath, layer: str, check_ranges: bool = True) -> list[Problem]:
    """Reachable, present, readable by ranges; every problem names the (masked) URL and the fix."""
    where = path.display
    try:
        h = path.head()
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return [Problem("unreachable-url", where, layer, f"the server cannot be reached ({reason})",
                        "check the host name and port in the URL, your network and proxy (GDAL_HTTP_PROXY, "
                        "https_proxy); or download the file and point the catalog at the local copy")]
    if h.status == 404:
        return [Problem("url-not-found", where, layer, "the server answers 404 Not Found: no file at this URL",
                        "check the URL's path and file name (the file may have moved or been renamed)")]
    if h.status in (401, 403):
        return [Problem("url-access-denied", where, layer, f"the server refuses access ({h.status} {h.reason})",
                        "give credentials through the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for s3://, "
                        "GDAL_HTTP_AUTH/GDAL_HTTP_USERPWD for https://) or use a presigned URL")]
    if h.status >= 400:
        return [Problem("url-error", where, layer, f"the server answers {h.status} {h.reason}",
                        "check the URL, or try again later if the server is failing")]
    if check_ranges:
        try:
            ranged = supports_ranges(path.http_url)
        except OSError as exc:
            return [Problem("unreachable-url", where, layer, f"the server stopped answering ({getattr(exc, 'reason', exc)})",
                            "check the network and try again")]
        if not ranged:
            return [Problem("no-range-support", where, layer,
                            "the server does not answer HTTP range requests (a request for bytes=0-0 returned the whole "
                            "file), and GDAL reads remote rasters and vectors by byte ranges",
                            "serve the file from a server that supports Range requests (object stores, nginx, Apache do), "
                            "or download it and point the catalog at the local copy")]
    return []
