"""A small HTTP server for tests: the files of one folder, with ETag (content MD5) and single byte
ranges (``SimpleHTTPRequestHandler`` has no Range support); under ``/norange/`` the same files from a
server without range support. ``python range_server.py FOLDER`` prints its port and serves until killed.
"""

from __future__ import annotations

import hashlib
import re
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class RangeHandler(SimpleHTTPRequestHandler):
    """Files of one folder with ETag (content MD5) and single byte ranges; under ``/norange/`` the
    same files without range support (a Range header is ignored and the whole file sent)."""

    def log_message(self, *args):
        pass

    def _file(self) -> Path | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        self.ranges = not rel.startswith("norange/")
        rel = rel.removeprefix("norange/")
        p = Path(self.directory) / rel
        return p if rel and p.is_file() else None

    def _serve(self, body: bool):
        p = self._file()
        if p is None:
            self.send_error(404)
            return
        data = p.read_bytes()
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")) if self.ranges else None
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            part = data[start:end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            part = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(part)))
        self.send_header("ETag", etag)
        if self.ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(part)

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)


def main(folder: str) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=folder))
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
